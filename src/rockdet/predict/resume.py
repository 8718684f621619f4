"""Resuming a batch: an image whose catalog an earlier run finished, from the same input with the
same model and settings, is skipped; any other catalog found is redone. The input is known to be
the same by the journal's sizes and times (predict.journal), or else by hashing its files. A
catalog the journal vouches for (its file as the journal recorded it) is kept without reading it."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterable

from rockdet.catalog.files import FORMATS, earlier_catalog
from rockdet.io.input_list import InputImage, InputList, InputSpool
from rockdet.io.inputs import file_sha256, product_sha256
from rockdet.io.layout import OutputLayout, journal_files
from rockdet.predict.journal import (
    CatalogStamps,
    Journal,
    JournalLines,
    catalog_record,
    entry,
    file_stamp,
    file_stamps,
    now_ns,
    read_journals,
    unchanged_since_journal,
    vouched_by_journal,
)
from rockdet.predict.summary import Outcome

log = logging.getLogger(__name__)

#: What makes the rocks of a catalog: an earlier catalog made otherwise is redone, not kept.
MADE_WITH = ("checkpoint_sha256", "arch", "score_threshold", "tiling", "camera", "head")


@dataclass
class BatchPlan:
    """What a run has to do, and what it keeps of an earlier run."""

    #: The images to catalogue, in input order (spooled: an archive's worth costs no memory).
    todo: InputList | list[InputImage] = field(default_factory=list)
    #: Images kept (their finished catalogs are read again if the batch files are rebuilt).
    skipped: list[Outcome] = field(default_factory=list)
    #: Finished catalogs redone: made from another image, checkpoint or settings...
    redone: int = 0
    #: ...and those that cannot be kept: tampered, alien or missing a file.
    unusable: int = 0
    #: Kept because the journal shows their inputs unchanged (sizes and times), or by hashing.
    kept_by_file_times: int = 0
    kept_by_hash: int = 0
    #: Every image kept as the journal vouches for it, each catalog's stamp known without reading
    #: it: then the batch files built from those very catalogs can be kept (predict.batch_files).
    all_vouched: bool = True
    catalogs: CatalogStamps = field(default_factory=CatalogStamps)

    @property
    def unchanged_catalogs(self) -> str | None:
        """The digest of the kept catalogs when nothing is left to do and each was vouched for."""
        return self.catalogs.hexdigest() if self.all_vouched and not self.todo else None


def plan_batch(images: Iterable[InputImage], context: dict[str, Any], layout: OutputLayout, formats: tuple[str, ...],
               overwrite: bool, verify: bool = False, journal: Journal | None = None) -> BatchPlan:
    """Which images to do. A finished catalog made with the same model and settings is kept when
    its input is unchanged: by the journal's sizes and times, or (``verify``, no journal line, times
    that cannot be trusted) by hashing the input's files. A catalog the journal vouches for
    (journal.vouched_by_journal) is kept without being read; any other image kept gets a fresh
    journal line recording its catalog, so the next resume need neither hash its input nor read
    it. ``journal`` is None in the processes of a run that do not write those lines."""
    wanted = made_with(context)
    lines = JournalLines() if overwrite or verify else read_journals(journal_files(layout))
    plan, todo = BatchPlan(), InputSpool()
    try:
        _plan(plan, todo, images, wanted, lines, layout, formats, overwrite, journal)
    except BaseException:
        todo.abandon()
        raise
    plan.todo = todo.finish()
    return plan


def _plan(plan: BatchPlan, todo: InputSpool, images: Iterable[InputImage], wanted: dict[str, Any],
          lines: JournalLines, layout: OutputLayout, formats: tuple[str, ...], overwrite: bool,
          journal: Journal | None) -> None:
    wanted_digest = made_with_digest(wanted)
    others = [fmt for fmt in formats if fmt in FORMATS and fmt != "json"]
    for image in images:
        if overwrite:
            plan.all_vouched = False
            todo.add(image)
            continue
        line = lines.get(image.key)
        json_file = layout.catalog_file(image.key, "json")
        if vouched_by_journal(line, image.path, wanted_digest, json_file,
                              [layout.catalog_file(image.key, fmt) for fmt in others]):
            plan.kept_by_file_times += 1
            plan.skipped.append(_kept(image.key, line["catalog"]["sized"] is True))
            plan.catalogs.add(image.key, line["catalog"]["json"])
            continue
        plan.all_vouched = False
        json_stamp = file_stamp(json_file)  # before reading it: a later change shows at the next resume
        earlier, problem = earlier_catalog(partial(layout.catalog_file, image.key), formats)
        if earlier is not None and made_with(earlier) == wanted:
            sized = "size_flag" in earlier.get("columns", [])
            if unchanged_since_journal(line, image.path, earlier):
                plan.kept_by_file_times += 1
                plan.skipped.append(_kept(image.key, sized))
                # The line predates catalog records, or its catalog was touched since: a fresh line
                # lets the next resume keep the catalog unread.
                if journal is not None and json_stamp is not None:
                    journal.record(entry(image.key, "done", source=image.path, sha256=earlier.get("sha256"),
                                         stamps=line["files"], stamped_at=line["stamped_at"],
                                         rocks=len(earlier.get("rocks", [])),
                                         catalog=catalog_record(wanted_digest, json_file, sized, json_stamp)))
                continue
            stamped_at, stamps = now_ns(), file_stamps(image.path)  # before hashing: a later change shows
            if same_input(earlier, image.path):
                plan.kept_by_hash += 1
                plan.skipped.append(_kept(image.key, sized))
                if journal is not None:
                    journal.record(entry(image.key, "done", source=image.path, sha256=earlier.get("sha256"),
                                         stamps=stamps, stamped_at=stamped_at, rocks=len(earlier.get("rocks", [])),
                                         catalog=catalog_record(wanted_digest, json_file, sized, json_stamp)
                                         if json_stamp is not None else None))
                continue
        if problem:
            log.warning("%s: redoing it (%s)", image.key, problem)
        plan.redone += earlier is not None
        plan.unusable += problem is not None
        todo.add(image)


def _kept(key: str, sized: bool) -> Outcome:
    return Outcome(key, "skipped", "catalog already complete (use --overwrite to redo)", sized=sized)


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


def made_with_digest(made: dict[str, Any]) -> str:
    """A short digest of ``made_with``'s values: what a journal line records of how its catalog was made."""
    return hashlib.blake2b(json.dumps(made, sort_keys=True).encode(), digest_size=16).hexdigest()
