"""`rockdet predict`: load a checkpoint, skip finished images, run, write the batch summary."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import torch

from rockdet.atomic import write_json_atomic
from rockdet.catalog.coco import write_predictions_coco
from rockdet.catalog.files import catalog_columns, earlier_catalog, read_catalog_json, write_rows_csv
from rockdet.catalog.layout import (
    COCO_FILE,
    ROCKS_FILE,
    SITE_MAP_FILE,
    SUMMARY_FILE,
    OutputLayout,
    hold_output_lock,
    refuse_overwriting,
)
from rockdet.errors import RockdetError
from rockdet.io.inputs import InputImage, collect_inputs, file_sha256, product_sha256
from rockdet.models import load_checkpoint_model, to_inference_form
from rockdet.models.archs import has_masks
from rockdet.models.inference_head import InferenceHead
from rockdet.predict.detect import stored_threshold, training_image_size
from rockdet.predict.job import CAMERA_AUTO, CAMERA_NONE, PredictJob, PredictRun
from rockdet.predict.lightning_run import Outcome, environment, run_prediction
from rockdet.predict.runtimes import exported_format, load_exported

log = logging.getLogger(__name__)

#: What makes the rocks of a catalog: an earlier catalog made otherwise is redone, not kept.
MADE_WITH = ("checkpoint_sha256", "arch", "score_threshold", "tiling", "camera", "head")


def predict_command(job: PredictJob) -> dict[str, Any] | None:
    """Run a whole batch and return the summary that is also written to ``OUT/summary.json``
    (None in the other processes of a multi-device run: the first one writes it)."""
    started = time.monotonic()
    layout = OutputLayout.at(job.out)
    images = collect_inputs(list(job.inputs), exclude=layout.is_own_output)
    camera = _camera(job)
    refuse_overwriting(layout, (image.key for image in images), job.formats, job.overlay,
                       _files_read(job, images, camera.files))
    with hold_output_lock(layout, job.wait_for_lock):
        run, model = _resolve(job, layout, camera)
        todo, skipped, redone, unusable = _plan(images, run)
        log.info("%d images: %d to do, %d already complete", len(images), len(todo), len(skipped))
        if redone:
            log.warning("%d catalogs in %s were made from another image, checkpoint or settings "
                        "(%s): redoing them", redone, layout.root, ", ".join(MADE_WITH))
        outcomes, is_main = run_prediction(model, todo, run) if todo else ([], True)
        if not is_main:
            return None
        summary, rows, documents = _summary(images, outcomes + skipped, started, run)
        summary["redone_made_otherwise"], summary["redone_unusable_catalog"] = redone, unusable
        if any(row.get("diameter_m") is not None for row in rows):
            from rockdet.report.sfd import write_batch_sfd
            from rockdet.report.site_map import write_site_map

            summary["sfd"] = write_batch_sfd(layout.root)
            summary["site_map"] = write_site_map(rows, layout.batch_file(SITE_MAP_FILE))
        write_json_atomic(layout.batch_file(SUMMARY_FILE), summary)
        from rockdet.report.html import write_report

        summary["report"] = str(write_report(layout.root, documents))
        return summary


def _files_read(job: PredictJob, images: list[InputImage], camera_files: list[Path]) -> Iterator[Path]:
    """Every file the run reads: what its outputs must never replace."""
    from rockdet.io.archives.pds import product_files

    yield job.checkpoint
    yield from camera_files
    for image in images:
        yield from product_files(image.path)


def _resolve(job: PredictJob, layout: OutputLayout, camera: CameraChoice) -> tuple[PredictRun, torch.nn.Module]:
    """Load the checkpoint and settle everything the run and the writer share."""
    model, hparams, model_form = load_detector(job.checkpoint, job.trust_checkpoint, job.as_trained, job.runtime)
    head = _head(model, job)
    input_size = training_image_size(hparams)
    settings = job.settings
    if settings.score_threshold is None:
        settings = replace(settings, score_threshold=stored_threshold(hparams))
    context = {"checkpoint": str(job.checkpoint), "checkpoint_sha256": file_sha256(job.checkpoint),
               "arch": hparams["model"]["arch"], "model_form": model_form,
               "score_threshold": settings.score_threshold,
               "tiling": {"tile": settings.tile or input_size, "overlap": settings.overlap,
                          "auto": settings.tile is None, "merge": f"{settings.merge_method}/"
                          f"{settings.merge_metric}>{settings.merge_threshold}",
                          "full_image_pass": settings.full_image_pass,
                          "nested": settings.nested_threshold,
                          "featureless_black": None if settings.sky_fraction is None else
                          f"{settings.sky_fraction} below {settings.sky_level}"},
               "camera": camera.record, "head": head}
    return PredictRun(job, layout, settings, input_size, has_masks(hparams["model"]["arch"]), context,
                      camera.sizer), model


def load_detector(path: Path, trust: bool, as_trained: bool, runtime: str = "onnxruntime"
                  ) -> tuple[torch.nn.Module, dict, str]:
    """(model, hparams, how it runs): a .ckpt in PyTorch (in its inference form unless
    ``as_trained``), an exported .torchscript file in TorchScript, an .onnx file in ``runtime``."""
    if exported_format(path) is not None:
        model, hparams = load_exported(path, runtime=runtime)
        return model, hparams, model.describe()
    if runtime != "onnxruntime":
        raise RockdetError(f"--runtime {runtime}: runs exported .onnx files; export {path.name} first "
                           f"with `rockdet export`")
    model, hparams = load_checkpoint_model(path, trust=trust)
    return model, hparams, "as trained" if as_trained else to_inference_form(model).describe()


def _head(model: torch.nn.Module, job: PredictJob) -> dict:
    """Set the job's proposals and detections per tile; an exported model keeps its own."""
    if exported_format(job.checkpoint) is not None:
        if job.head != InferenceHead():
            raise RockdetError(f"{job.checkpoint}: an exported model's head is fixed at export; pass "
                               f"--proposals/--detections-per-tile to `rockdet export` instead")
        return dict(model.metadata.get("head") or {})
    return job.head.apply(model)


def _plan(images: list[InputImage], run: PredictRun):
    """(images to do, skipped outcomes, how many finished catalogs are redone because they
    were made from another image, or with another checkpoint or settings, how many because
    their catalog cannot be kept: tampered, alien or missing a file)."""
    wanted = _made_with(run.context)
    todo, skipped, redone, unusable = [], [], 0, 0
    for job in images:
        earlier, problem = (None, None) if run.job.overwrite else earlier_catalog(
            partial(run.layout.catalog_file, job.key), run.job.formats)
        if earlier is not None and _made_with(earlier) == wanted and _same_input(earlier, job.path):
            skipped.append(Outcome(job.key, "skipped", "catalog already complete (use --overwrite to redo)"))
            continue
        if problem:
            log.warning("%s: redoing it (%s)", job.key, problem)
        redone += earlier is not None
        unusable += problem is not None
        todo.append(job)
    return todo, skipped, redone, unusable


def _same_input(catalog: dict[str, Any], path: Path) -> bool:
    """The catalog was made from this very input: same resolved path, same bytes, and the same
    bytes of every other file the product is made of (a detached label)."""
    sha256 = file_sha256(path)
    if catalog.get("source") != str(path.resolve()) or catalog.get("sha256") != sha256:
        return False
    files = product_sha256(path, sha256)
    if catalog.get("product_files") is None:  # written before catalogs recorded them
        return len(files) == 1
    return catalog["product_files"] == files


def _made_with(record: dict[str, Any]) -> dict[str, Any]:
    made_with = {key: record.get(key) for key in MADE_WITH}
    if isinstance(made_with["camera"], dict):  # the camera's content counts, not where its file lies
        made_with["camera"] = {k: v for k, v in made_with["camera"].items() if k != "file"}
    return json.loads(json.dumps(made_with))  # as it reads back from a catalog


class CameraChoice(NamedTuple):
    """How a run sizes rocks: the sizer, what catalogs record of the camera, and its files."""

    sizer: Callable | None
    record: dict[str, Any] | None
    files: list[Path]


def _camera(job: PredictJob) -> CameraChoice:
    """The camera for --camera auto, none or FILE. A FILE's record holds the SHA-256 of the YAML
    and of its exclusion mask, so a resumed run redoes images sized with another."""
    if job.camera == CAMERA_NONE:
        return CameraChoice(None, None, [])
    if job.camera == CAMERA_AUTO:
        from rockdet.geometry.label_sizing import LABEL_MAX_RANGE_M, label_sizer

        return CameraChoice(label_sizer(job.ground_z), {"mode": CAMERA_AUTO, "ground_z_m": job.ground_z,
                                                         "max_range_m": LABEL_MAX_RANGE_M}, [])
    from rockdet.geometry.cameras import load_camera
    from rockdet.geometry.sizing import rock_sizer

    path = Path(job.camera)
    model = load_camera(path)
    record = {"file": str(path), "sha256": file_sha256(path), **model.describe()}
    mask = model.config.exclusion_mask
    if mask is not None:
        if not Path(mask).is_file():
            raise RockdetError(f"{path}: exclusion_mask {mask} not found")
        record["exclusion_mask_sha256"] = file_sha256(Path(mask))
    return CameraChoice(rock_sizer(model), record, [path] + ([Path(mask)] if mask is not None else []))


def _summary(jobs: list[InputImage], outcomes: list[Outcome], started: float, run: PredictRun
             ) -> tuple[dict[str, Any], list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """The batch summary, every finished image's rocks (also written to rocks.csv), and the
    catalogs they came from (key, JSON)."""
    layout = run.layout
    by_status = {status: [o for o in outcomes if o.status == status] for status in ("done", "skipped", "failed")}
    rows, unreadable, documents = [], [], []
    for job in jobs:  # rocks.csv covers every finished image, earlier runs included
        if any(o.image == job.key for o in by_status["failed"]):
            continue
        try:
            document = read_catalog_json(layout.catalog_file(job.key, "json"), strict=True)
            documents.append((job.key, document))
            rows += [{"image": job.key, **row} for row in document.get("rocks", [])]
        except RockdetError as exc:
            log.warning("%s: catalog unreadable, its rocks are not in %s (%s)", job.key, ROCKS_FILE, exc)
            unreadable.append({"image": job.key, "reason": f"catalog unreadable: {exc}"})
    # Metric columns when a camera sized any image (with --camera auto, PDS products only).
    sized = any("size_flag" in row for row in rows) or (run.sizer is not None and run.job.camera != CAMERA_AUTO)
    columns = ["image"] + catalog_columns(run.with_masks, sized)
    write_rows_csv(layout.batch_file(ROCKS_FILE), columns, rows)
    if "coco" in run.job.formats:
        write_predictions_coco(documents, layout.batch_file(COCO_FILE))
    seconds = time.monotonic() - started
    done = len(by_status["done"])
    return {
        "images": len(jobs), "done": done, "skipped": len(by_status["skipped"]),
        "failed": len(by_status["failed"]),
        "failures": [{"image": o.image, "reason": o.reason} for o in by_status["failed"]],
        "skipped_images": [{"image": o.image, "reason": o.reason} for o in by_status["skipped"]],
        "left_out_of_rocks_csv": unreadable,
        "rocks_this_run": sum(o.rocks for o in by_status["done"]), "rocks_total": len(rows),
        "notes": {o.image: o.notes for o in by_status["done"] if o.notes},
        "seconds": round(seconds, 2), "images_per_second": round(done / seconds, 3) if seconds else None,
        **run.context, "formats": list(run.job.formats), "versions": environment(),
    }, rows, documents
