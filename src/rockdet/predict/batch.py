"""A batch run, what `rockdet predict` and ``Predictor.predict_batch`` do: find the inputs, hold the
output folder, skip what an earlier run finished, catalogue the rest, write the batch files."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from rockdet.io.archives.pds import product_files
from rockdet.io.input_list import InputImage, InputList
from rockdet.io.inputs import collect_inputs
from rockdet.io.layout import OutputLayout, hold_output_lock, journal_file, refuse_overwriting
from rockdet.io.resolved import folders_resolved_once
from rockdet.predict.journal import Journal
from rockdet.predict.predictor import Predictor, choose_camera, lightning_devices
from rockdet.predict.resume import MADE_WITH, plan_batch
from rockdet.predict.settings import PredictSettings
from rockdet.predict.summary import finish_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchInputs:
    """A batch's inputs and output folder, checked before any model is loaded."""

    layout: OutputLayout
    #: In a stable order, spooled to a file (io.input_list).
    images: InputList


def check_batch(inputs: list[str], out: Path, settings: PredictSettings, model_file: Path | None) -> BatchInputs:
    """Everything about a batch that can be wrong before its model loads, each one line: a missing
    input, outputs that would replace an input (the model file and camera files included), an
    output folder that cannot be used, a device that is not there."""
    with folders_resolved_once():  # an archive's inputs share few folders
        layout = OutputLayout.at(out)
        images = collect_inputs(list(inputs), exclude=layout.is_own_output)
        refuse_overwriting(layout, (image.key for image in images), settings.formats, settings.overlay,
                           files_read(model_file, choose_camera(settings).files, images))
        lightning_devices(settings)
        return BatchInputs(layout, images)


def run_batch(predictor: Predictor, inputs: list[str], out: Path, checked: BatchInputs | None = None
              ) -> dict[str, Any] | None:
    """Catalogue every input image under ``out`` and return the summary also written to
    ``out/summary.json`` (None in the other processes of a multi-device run: the first writes it).
    A shard (``settings.shard``) catalogues its share and returns its counts; it writes no batch
    files, since a run without a shard writes them once every shard has finished."""
    started = time.monotonic()
    with folders_resolved_once():  # an archive's inputs and outputs share few folders
        return _run_batch(predictor, inputs, out, checked, started)


def _run_batch(predictor: Predictor, inputs: list[str], out: Path, checked: BatchInputs | None, started: float
               ) -> dict[str, Any] | None:
    settings = predictor.settings
    checked = checked or check_batch(inputs, out, settings, predictor.source)
    layout, images = checked.layout, checked.images
    shard = settings.shard_of
    if shard is not None:
        images = images[shard[0] - 1::shard[1]]  # inputs come in a stable order: the shards part them
    with hold_output_lock(layout, settings.wait_for_lock, shard) as holder:
        # Every process of a run plans alike; only the lock's holder records what it kept, so the
        # machines of a run never append the same lines to one journal.
        journal = Journal(layout.batch_file(journal_file(shard))) if holder else None
        try:
            plan = plan_batch(images, predictor.context, layout, settings.image_formats, settings.overwrite,
                              settings.verify, journal)
        finally:
            if journal is not None:
                journal.close()
        log.info("%d images: %d to do, %d already complete (%d known unchanged by the journal's file "
                 "sizes and times, %d by hashing)", len(images), len(plan.todo), len(plan.skipped),
                 plan.kept_by_file_times, plan.kept_by_hash)
        if plan.redone:
            log.warning("%d catalogs in %s were made from another image, checkpoint or settings "
                        "(%s): redoing them", plan.redone, layout.root, ", ".join(MADE_WITH))
        if plan.todo:
            # Imported only when there is work: Lightning takes seconds to import, a no-op resume none.
            from rockdet.predict.lightning_run import run_prediction

            outcomes, is_main = run_prediction(predictor, plan.todo, layout)
        else:
            outcomes, is_main = [], True
        if not is_main:
            return None
        if shard is not None:
            outcomes += plan.skipped
            failed = [o for o in outcomes if o.status == "failed"]
            return {"shard": settings.shard, "images": len(images), "done": sum(o.status == "done" for o in outcomes),
                    "skipped": len(plan.skipped), "failed": len(failed),
                    "failures": [{"image": o.image, "reason": o.reason} for o in failed]}
        return finish_batch(predictor, layout, images, outcomes + plan.skipped, started, {
            "redone_made_otherwise": plan.redone, "redone_unusable_catalog": plan.unusable,
            "kept_by_file_times": plan.kept_by_file_times, "kept_by_hash": plan.kept_by_hash}, plan.unchanged_catalogs)


def files_read(model_file: Path | None, camera_files: list[Path], images: Iterable[InputImage]) -> Iterator[Path]:
    """Every file the run reads: what its outputs must never replace."""
    if model_file is not None:
        yield Path(model_file)
    yield from camera_files
    for image in images:
        yield from product_files(image.path)
