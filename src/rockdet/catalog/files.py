"""Catalog files: rows as CSV and Parquet, the catalog JSON read back and checked, written
atomically (a reader, or a rerun after a crash, never sees half a file)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from rockdet.atomic import atomic_path, finite, write_text_atomic
from rockdet.catalog.rock import BASE_COLUMNS
from rockdet.errors import RockdetError

CATALOG_VERSION = 1
FORMATS = ("csv", "json", "parquet")
#: Column types shared by every catalog file; columns not named here are float64 (pixels, metres).
_INTEGER_COLUMNS = ("rock_id",)
_TEXT_COLUMNS = ("image", "size_flag")


#: Where one image's catalog file of a format goes (``OutputLayout.catalog_file`` for one key).
CatalogPaths = Callable[[str], Path]


def read_catalog_json(path: Path, strict: bool = False) -> dict[str, Any]:
    """A catalog JSON as written by write_catalog, or one RockdetError line saying why not.
    ``strict``: every rock a row of the catalog's columns with values of their types, as
    write_catalog writes them (what a resumed run keeps and rocks.csv copies)."""
    return read_catalog_json_stamped(path, strict)[0]


def read_catalog_json_stamped(path: Path, strict: bool = False) -> tuple[dict[str, Any], list[int]]:
    """read_catalog_json, and the [size, modification time, change time (ns), inode] of the very
    file read (predict.journal's stamp: what a batch's files were built from)."""
    try:
        with open(path, "rb") as handle:
            status = os.fstat(handle.fileno())
            document = json.loads(handle.read().decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RockdetError(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
    if not isinstance(document, dict) or not isinstance(document.get("rocks", []), list):
        raise RockdetError(f"{path}: not a rockdet catalog (expected an object with a 'rocks' list)")
    problem = catalog_problem(document) if strict else None
    if problem:
        raise RockdetError(f"{path}: not a rockdet catalog ({problem})")
    return document, [status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino]


def catalog_problem(document: dict[str, Any]) -> str | None:
    """Why a catalog JSON is not one write_catalog wrote (tampered, alien, another version), or None."""
    if document.get("catalog_version") != CATALOG_VERSION:
        return f"catalog_version {document.get('catalog_version')!r}, this rockdet writes {CATALOG_VERSION}"
    columns, rocks = document.get("columns"), document.get("rocks")
    if not isinstance(columns, list) or not set(BASE_COLUMNS) <= set(columns) or \
            not all(isinstance(column, str) for column in columns):
        return "its 'columns' are not a catalog's"
    if not isinstance(rocks, list) or document.get("rock_count") != len(rocks):
        return f"rock_count {document.get('rock_count')!r} but {len(rocks) if isinstance(rocks, list) else 'no'} rocks"
    for index, rock in enumerate(rocks):
        if not isinstance(rock, dict):
            return f"rocks[{index}] is {json.dumps(rock)[:40]}, not a row"
        for column in columns:
            value = rock.get(column, _MISSING)
            if value is None or (type(value) is str if column in _TEXT_COLUMNS else
                                 type(value) in (int, float) and math.isfinite(value)):
                continue
            return f"rocks[{index}] has no {column}" if value is _MISSING else \
                f"rocks[{index}].{column} is {json.dumps(value)[:40]}"
    return None


_MISSING = object()


def earlier_catalog(paths: CatalogPaths, formats: tuple[str, ...]) -> tuple[dict[str, Any] | None, str | None]:
    """An earlier run's catalog of one image: (its JSON, None) when that run finished the image
    (the JSON says so, is a catalog as rockdet writes them, and every file exists); (None, why
    not) when there is a JSON it cannot keep; (None, None) when there is none."""
    json_file = paths("json")
    if not json_file.exists():
        return None, None
    try:
        document = read_catalog_json(json_file, strict=True)
    except RockdetError as exc:
        return None, str(exc)
    if document.get("complete") is not True:
        return None, f"{json_file}: not marked complete"
    missing = [fmt for fmt in formats if fmt in FORMATS and fmt != "json" and not paths(fmt).is_file()]
    return (None, f"{json_file}: its {', '.join(missing)} file is missing") if missing else (document, None)


#: One rock row as strict JSON on one line: the C encoder (an indented dump runs Python's own,
#: about ten times slower, and a batch writes every rock it finds).
_ROW_ENCODER = json.JSONEncoder(allow_nan=False, default=str)


def write_catalog_json(path: Path, document: dict[str, Any]) -> Path:
    """The catalog JSON, atomically: its header indented, its rocks (the last key) one a line,
    so a person can still read it. NaN and infinity become null, as in every rockdet JSON."""
    rows = document["rocks"]
    header = json.dumps(finite({key: value for key, value in document.items() if key != "rocks"}),
                        indent=2, default=str, allow_nan=False)
    lines = ",\n    ".join(_row_json(row) for row in rows)
    rocks = f'"rocks": [\n    {lines}\n  ]' if rows else '"rocks": []'
    # The header ends with "\n}"; an empty header is "{}".
    text = f"{header[:-2]},\n  {rocks}\n}}\n" if len(header) > 2 else f"{{\n  {rocks}\n}}\n"
    write_text_atomic(path, text)
    return path


def _row_json(row: dict[str, Any]) -> str:
    try:
        return _ROW_ENCODER.encode(row)
    except ValueError:  # a NaN or infinity in the row
        return _ROW_ENCODER.encode(finite(row))


def write_rows_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    with atomic_path(path) as temp, temp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return path


def write_rows_parquet(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise RockdetError("parquet catalogs need pyarrow: pip install 'rockdet[parquet]'") from None
    schema = catalog_schema(columns)
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows], schema=schema)
    with atomic_path(path) as temp:
        pq.write_table(table, temp)
    return path


def catalog_schema(columns: list[str]):
    """One declared Arrow schema, so catalogs of one batch read together as a dataset whatever
    values (or none) each image's rocks happened to have."""
    import pyarrow as pa

    def column_type(name: str):
        if name in _INTEGER_COLUMNS:
            return pa.int64()
        return pa.string() if name in _TEXT_COLUMNS else pa.float64()

    return pa.schema([(name, column_type(name)) for name in columns])


def read_catalog_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a catalog CSV with numbers as floats and empty cells as None."""
    def parse(key: str, value: str):
        if value == "":
            return None
        if key in _TEXT_COLUMNS:
            return value
        try:
            return float(value)
        except ValueError:
            return value

    with Path(path).open(newline="") as handle:
        return [{k: parse(k, v) for k, v in row.items()} for row in csv.DictReader(handle)]

