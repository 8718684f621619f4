"""`rockdet predict`: load a checkpoint, skip finished images, run, write the batch summary."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

from rockdet.atomic import write_json_atomic
from rockdet.batch import Outcome, environment, run_prediction
from rockdet.catalog import FORMATS, catalog_columns, read_complete_catalog, write_rows_csv
from rockdet.errors import RockdetError
from rockdet.inference import PredictSettings, training_image_size
from rockdet.inputs import collect_inputs
from rockdet.models import load_checkpoint_model, to_inference_form
from rockdet.models.archs import has_masks
from rockdet.outputs import ROCKS_FILE, SUMMARY_FILE, OutputLayout, hold_output_lock

log = logging.getLogger(__name__)

#: What makes the rocks of a catalog: an earlier catalog made otherwise is redone, not kept.
MADE_WITH = ("checkpoint_sha256", "arch", "score_threshold", "tiling", "camera")


def predict_command(checkpoint: Path, out_dir: Path, inputs: list[str], settings: PredictSettings,
                    formats: tuple[str, ...] = ("csv", "json"), overwrite: bool = False,
                    devices: int | str = 1, accelerator: str = "auto", workers: int = 0,
                    camera: Path | None = None, overlay: bool = False,
                    as_trained: bool = False, wait_for_lock: bool = False,
                    trust_checkpoint: bool = False) -> dict[str, Any] | None:
    """Run a whole batch and return the summary that is also written to ``out_dir/summary.json``
    (None in the other processes of a multi-device run: the first one writes it).

    ``as_trained`` runs the model exactly as it was trained instead of in its faster inference
    form (batch norms folded, channels-last), which gives the same rocks up to float rounding."""
    started = time.monotonic()
    unknown = set(formats) - set(FORMATS)
    if unknown or "json" not in formats:
        raise RockdetError(f"--format: choose from {list(FORMATS)} and include json (it marks a "
                           f"catalog complete); got {','.join(formats)}")
    if settings.tile is not None and settings.tile < 32:
        raise RockdetError(f"--tile {settings.tile}: give a tile size of at least 32 pixels")
    if not 0.0 <= settings.overlap < 1.0:
        raise RockdetError(f"--overlap {settings.overlap}: give a fraction in [0, 1)")
    if settings.batch_size < 1:
        raise RockdetError(f"--batch-size {settings.batch_size}: give at least 1")
    layout = OutputLayout.at(out_dir)
    jobs = collect_inputs(inputs, exclude=layout.is_own_output)
    with hold_output_lock(layout, wait_for_lock):
        return _predict_locked(checkpoint, layout, jobs, settings, formats, overwrite, devices,
                               accelerator, workers, camera, overlay, as_trained, started,
                               trust_checkpoint)


def _predict_locked(checkpoint, layout: OutputLayout, jobs, settings, formats, overwrite, devices,
                    accelerator, workers, camera, overlay, as_trained, started, trust_checkpoint):
    model, hparams = load_checkpoint_model(checkpoint, trust=trust_checkpoint)
    model_form = "as trained" if as_trained else to_inference_form(model).describe()
    input_size = training_image_size(hparams)
    if settings.score_threshold is None:
        settings.score_threshold = float(hparams.get("evaluation", {}).get("score_threshold", 0.5))
    sizer, camera_record = _camera(camera)
    with_masks = has_masks(hparams["model"]["arch"])
    context = {"checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint),
               "arch": hparams["model"]["arch"], "model_form": model_form,
               "score_threshold": settings.score_threshold,
               "tiling": {"tile": settings.tile or input_size, "overlap": settings.overlap,
                          "auto": settings.tile is None, "merge": f"{settings.merge_method}/"
                          f"{settings.merge_metric}>{settings.merge_threshold}",
                          "full_image_pass": settings.full_image_pass},
               "camera": camera_record}
    todo, skipped, redone = _plan(jobs, layout, formats, context, overwrite)
    log.info("%d images: %d to do, %d already complete", len(jobs), len(todo), len(skipped))
    if redone:
        log.warning("%d catalogs in %s were made from another image, checkpoint or settings "
                    "(%s): redoing them", redone, layout.root, ", ".join(MADE_WITH))
    outcomes, is_main = run_prediction(model, todo, layout, settings, input_size, formats, context,
                                       with_masks, devices, accelerator, workers, sizer, overlay) \
        if todo else ([], True)
    if not is_main:
        return None
    summary = _summary(jobs, outcomes + skipped, started, context, layout, formats, with_masks,
                       sizer is not None)
    summary["redone_made_otherwise"] = redone
    if sizer is not None:
        from rockdet.sfd import write_batch_sfd

        summary["sfd"] = write_batch_sfd(layout.root)
    write_json_atomic(layout.batch_file(SUMMARY_FILE), summary)
    return summary


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file read in blocks (checkpoints can be large); None when it is not a file."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plan(jobs, layout: OutputLayout, formats, context: dict[str, Any], overwrite: bool):
    """(images to do, skipped outcomes, how many finished catalogs are redone because they
    were made from another image, or with another checkpoint or settings)."""
    wanted = _made_with(context)
    todo, skipped, redone = [], [], 0
    for job in jobs:
        earlier = None if overwrite else read_complete_catalog(partial(layout.catalog_file, job.key),
                                                               formats)
        if earlier is not None and _made_with(earlier) == wanted and _same_input(earlier, job.path):
            skipped.append(Outcome(job.key, "skipped", "catalog already complete (use --overwrite to redo)"))
            continue
        redone += earlier is not None
        todo.append(job)
    return todo, skipped, redone


def _same_input(catalog: dict[str, Any], path: Path) -> bool:
    """The catalog was made from this very file: same resolved path and same bytes."""
    return catalog.get("source") == str(path.resolve()) and catalog.get("sha256") == file_sha256(path)


def _made_with(record: dict[str, Any]) -> dict[str, Any]:
    made_with = {key: record.get(key) for key in MADE_WITH}
    if isinstance(made_with["camera"], dict):  # the camera's content counts, not where its file lies
        made_with["camera"] = {k: v for k, v in made_with["camera"].items() if k != "file"}
    return json.loads(json.dumps(made_with))  # as it reads back from a catalog


def _camera(camera: Path | None):
    if camera is None:
        return None, None
    from rockdet.geometry import load_camera
    from rockdet.sizing import rock_sizer

    model = load_camera(camera)
    return rock_sizer(model), {"file": str(camera), **model.describe()}


def _summary(jobs, outcomes: list[Outcome], started: float, context, layout: OutputLayout,
             formats, with_masks: bool, with_geometry: bool) -> dict[str, Any]:
    by_status = {status: [o for o in outcomes if o.status == status] for status in ("done", "skipped", "failed")}
    rows, unreadable = [], []
    for job in jobs:  # rocks.csv covers every finished image, earlier runs included
        if any(o.image == job.key for o in by_status["failed"]):
            continue
        try:
            rows += _catalog_rows(layout, job.key)
        except (OSError, ValueError) as exc:
            log.warning("%s: catalog unreadable, its rocks are not in %s (%s)", job.key, ROCKS_FILE, exc)
            unreadable.append({"image": job.key, "reason": f"catalog unreadable: {exc}"})
    columns = ["image"] + catalog_columns(with_masks, with_geometry)
    write_rows_csv(layout.batch_file(ROCKS_FILE), columns, rows)
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
        **context, "formats": list(formats), "versions": environment(),
    }


def _catalog_rows(layout: OutputLayout, key: str) -> list[dict[str, Any]]:
    document = json.loads(layout.catalog_file(key, "json").read_text())
    return [{"image": key, **row} for row in document.get("rocks", [])]

