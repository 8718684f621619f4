"""A batch run, what `rockdet predict` and ``Predictor.predict_batch`` do: find the inputs, hold the
output folder, skip what an earlier run finished, catalogue the rest, write the batch files."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterator

from rockdet.catalog.layout import OutputLayout, hold_output_lock, refuse_overwriting
from rockdet.io.inputs import InputImage, collect_inputs
from rockdet.predict.lightning_run import run_prediction
from rockdet.predict.predictor import Predictor
from rockdet.predict.resume import MADE_WITH, plan_batch
from rockdet.predict.summary import finish_batch

log = logging.getLogger(__name__)


def run_batch(predictor: Predictor, inputs: list[str], out: Path) -> dict[str, Any] | None:
    """Catalogue every input image under ``out`` and return the summary also written to
    ``out/summary.json`` (None in the other processes of a multi-device run: the first writes it)."""
    started = time.monotonic()
    settings = predictor.settings
    layout = OutputLayout.at(out)
    images = collect_inputs(list(inputs), exclude=layout.is_own_output)
    refuse_overwriting(layout, (image.key for image in images), settings.formats, settings.overlay,
                       files_read(predictor, images))
    with hold_output_lock(layout, settings.wait_for_lock):
        todo, skipped, redone, unusable = plan_batch(images, predictor.context, layout, settings.image_formats,
                                                     settings.overwrite)
        log.info("%d images: %d to do, %d already complete", len(images), len(todo), len(skipped))
        if redone:
            log.warning("%d catalogs in %s were made from another image, checkpoint or settings "
                        "(%s): redoing them", redone, layout.root, ", ".join(MADE_WITH))
        outcomes, is_main = run_prediction(predictor, todo, layout) if todo else ([], True)
        if not is_main:
            return None
        return finish_batch(predictor, layout, images, outcomes + skipped, started, (redone, unusable))


def files_read(predictor: Predictor, images: list[InputImage]) -> Iterator[Path]:
    """Every file the run reads: what its outputs must never replace."""
    from rockdet.io.archives.pds import product_files

    if predictor.source is not None:
        yield predictor.source
    yield from predictor.camera.files
    for image in images:
        yield from product_files(image.path)
