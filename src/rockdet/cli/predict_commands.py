"""`rockdet` commands of the predict side: predict, export, report, sfd."""

from __future__ import annotations


def predict(options) -> int:
    from rockdet.io.layout import CATALOG_DIR, ROCKS_FILE, SUMMARY_FILE
    from rockdet.predict.batch import check_batch, run_batch
    from rockdet.predict.predictor import Predictor
    from rockdet.predict.settings import PredictSettings

    settings = PredictSettings.of(
        score_threshold=options.score_threshold, tile=options.tile, overlap=options.overlap,
        tile_batch=options.batch_size, proposals=options.proposals, detections_per_tile=options.detections_per_tile,
        merge_threshold=options.merge_threshold, merge_metric=options.merge_metric,
        merge_method=options.merge_method, full_image_pass=options.full_image_pass, tta=options.tta,
        nested_threshold=None if options.keep_nested else PredictSettings().nested_threshold,
        sky_fraction=None if options.keep_on_black else PredictSettings().sky_fraction,
        min_diameter_px=options.min_diameter_px, drop_above_horizon=options.drop_above_horizon,
        device=options.device, devices=options.devices, num_nodes=options.num_nodes, runtime=options.runtime,
        as_trained=options.as_trained,
        trust_checkpoint=options.trust_checkpoint, camera=options.camera, ground_z=options.ground_z,
        formats=tuple(f.strip() for f in options.format.split(",") if f.strip()), overlay=options.overlay,
        overwrite=options.overwrite, verify=options.verify, workers=options.workers, wait_for_lock=options.wait,
        shard=options.shard)
    # Inputs, outputs and devices are checked before the model loads: a typo costs no model load.
    checked = check_batch(options.inputs, options.out, settings, options.checkpoint)
    summary = run_batch(Predictor.load(options.checkpoint, settings), options.inputs, options.out, checked)
    if summary is None:  # another process of a multi-device run; the first one reports
        return 0
    if settings.shard is not None:
        print(f"shard {settings.shard}: {summary['done']} done, {summary['skipped']} skipped, {summary['failed']} "
              f"failed of its {summary['images']} images; catalogs in {options.out / CATALOG_DIR}. When every "
              f"shard has finished, run the same command without --shard to write the batch files "
              f"(it keeps every catalog, unhashed, by the shards' journals)")
        for failure in summary["failures"]:
            print(f"  failed: {failure['image']}: {failure['reason']}")
        return 0
    print(f"{summary['done']} done, {summary['skipped']} skipped, {summary['failed']} failed of "
          f"{summary['images']} images; {summary['rocks_total']} rocks in {options.out / ROCKS_FILE}")
    for failure in summary["failures"]:
        print(f"  failed: {failure['image']}: {failure['reason']}")
    print(f"catalogs: {options.out / CATALOG_DIR} (one CSV + JSON per image); "
          f"summary: {options.out / SUMMARY_FILE}")
    print(f"report: {summary['report']} (open it in a browser)")
    return 0


def export(options) -> int:
    from rockdet.deploy.export import export_checkpoint
    from rockdet.models.inference_head import InferenceHead

    info, parity, quantized = export_checkpoint(
        options.checkpoint, options.format, options.out, options.trust_checkpoint, options.parity_threshold,
        InferenceHead(options.proposals, options.detections_per_tile), quantize=options.quantize,
        calibration=options.calibration, calibration_tiles=options.calibration_tiles, score_floor=options.score_floor)
    print(f"written: {options.out} ({options.format}{', ' + options.quantize if quantized else ''}, {info.describe()})")
    print(f"parity with PyTorch: {parity.describe()}")
    if quantized is not None:
        print(f"parity of {options.quantize} with FP32: {quantized.describe()}")
    return 0


def report(options) -> int:
    from rockdet.report.html import rebuild_report

    print(f"written: {rebuild_report(options.folder)}")
    return 0


def sfd(options) -> int:
    from rockdet.io.output_guard import check_output_files_in, check_output_folder, refuse_inputs_as_outputs
    from rockdet.report.sfd import SFD_JSON, SFD_PNG, write_sfd
    from rockdet.stats.sfd import MAX_DIAMETER_M, load_sizes, sfd_statistics

    outputs = [options.out / SFD_JSON, options.out / SFD_PNG]
    refuse_inputs_as_outputs(outputs, [options.catalogs, options.catalogs.with_suffix(".json")])
    check_output_folder(options.out)
    check_output_files_in(options.out, [SFD_JSON, SFD_PNG], "--out")
    sizes = load_sizes(options.catalogs, options.area_m2)
    result = sfd_statistics(sizes.diameters, sizes.area_m2, options.min_diameter_m, options.bootstrap,
                            options.seed)
    write_sfd(result, options.out, sizes.left_out())
    for problem in sizes.unreadable:
        print(f"  left out: {problem}")
    if sizes.invalid_diameters:
        print(f"  left out {sizes.invalid_diameters} diameters that are not a finite number above 0")
    if sizes.absurd_diameters:
        print(f"  left out {sizes.absurd_diameters} diameters above {MAX_DIAMETER_M:g} m: no rock a rover "
              f"or descent camera sizes is that large (a camera-model or file error)")
    print(f"{result.rocks} rocks with a metric size on {result.area_m2:.2f} m^2; "
          f"completeness cut-off {result.completeness_m or float('nan'):.3g} m ({result.rocks_used} rocks used)")
    if result.status == "ok":
        print(f"Golombek-Rapp k = {result.k:.4f}  95% CI {result.k_ci95}")
        print(f"power law N(>=D) = {result.power_law_coefficient:.4g} D^-{result.power_law_exponent:.3f}"
              f"  95% CI of exponent {result.power_law_exponent_ci95}")
    else:
        print(f"no fit ({result.status}): {result.message}")
    print(f"written: {options.out / SFD_JSON}, {options.out / SFD_PNG}")
    return 0
