"""Resuming a batch: an image whose catalog an earlier run finished, from the same input with the
same model and settings, is skipped; any other catalog found is redone."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

from rockdet.catalog.files import earlier_catalog
from rockdet.io.inputs import InputImage, file_sha256, product_sha256
from rockdet.io.layout import OutputLayout
from rockdet.predict.summary import CatalogDigest, Outcome

log = logging.getLogger(__name__)

#: What makes the rocks of a catalog: an earlier catalog made otherwise is redone, not kept.
MADE_WITH = ("checkpoint_sha256", "arch", "score_threshold", "tiling", "camera", "head")


def plan_batch(images: list[InputImage], context: dict[str, Any], layout: OutputLayout, formats: tuple[str, ...],
               overwrite: bool) -> tuple[list[InputImage], list[Outcome], int, int]:
    """(images to do, skipped outcomes with the digests of their finished catalogs, how many
    finished catalogs are redone because they were made from another image, checkpoint or
    settings, how many because their catalog cannot be kept: tampered, alien or missing a file)."""
    wanted = made_with(context)
    todo, skipped, redone, unusable = [], [], 0, 0
    for image in images:
        earlier, problem = (None, None) if overwrite else earlier_catalog(partial(layout.catalog_file, image.key),
                                                                          formats)
        if earlier is not None and made_with(earlier) == wanted and same_input(earlier, image.path):
            skipped.append(Outcome(image.key, "skipped", "catalog already complete (use --overwrite to redo)",
                                   digest=CatalogDigest.of_document(image.key, earlier)))
            continue
        if problem:
            log.warning("%s: redoing it (%s)", image.key, problem)
        redone += earlier is not None
        unusable += problem is not None
        todo.append(image)
    return todo, skipped, redone, unusable


def same_input(catalog: dict[str, Any], path: Path) -> bool:
    """The catalog was made from this very input: same resolved path, same bytes, and the same
    bytes of every other file the product is made of (a detached label)."""
    sha256 = file_sha256(path)
    if catalog.get("source") != str(path.resolve()) or catalog.get("sha256") != sha256:
        return False
    files = product_sha256(path, sha256)
    if catalog.get("product_files") is None:  # written before catalogs recorded them
        return len(files) == 1
    return catalog["product_files"] == files


def made_with(record: dict[str, Any]) -> dict[str, Any]:
    made = {key: record.get(key) for key in MADE_WITH}
    if isinstance(made["camera"], dict):  # the camera's content counts, not where its file lies
        made["camera"] = {k: v for k, v in made["camera"].items() if k != "file"}
    return json.loads(json.dumps(made))  # as it reads back from a catalog
