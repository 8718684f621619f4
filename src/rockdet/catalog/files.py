"""Rock catalogs: one CSV/JSON (optionally Parquet) per image, written atomically.

Size definitions (also in the README):
- ``diameter_px``: with a mask, the equivalent-circle diameter 2·sqrt(area/π); without, the mean
  of box width and height.
- ``area_px``: with a mask, its pixel count; without, the ellipse inscribed in the box, π/4·w·h.
- ``major_axis_px``/``minor_axis_px`` (masks only): axes of the ellipse with the mask's second
  moments.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rockdet.atomic import atomic_path, write_json_atomic
from rockdet.errors import RockdetError

CATALOG_VERSION = 1
BASE_COLUMNS = ["rock_id", "score", "x_min", "y_min", "x_max", "y_max", "x_center", "y_center",
                "width_px", "height_px", "diameter_px", "area_px", "range_m", "diameter_m"]
MASK_COLUMNS = ["major_axis_px", "minor_axis_px"]
GEOMETRY_COLUMNS = ["ground_x_m", "ground_y_m", "height_m", "size_flag", "site_x_m", "site_y_m", "site_z_m"]
FORMATS = ("csv", "json", "parquet")
#: Column types shared by every catalog file; columns not named here are float64 (pixels, metres).
_INTEGER_COLUMNS = ("rock_id",)
_TEXT_COLUMNS = ("image", "size_flag")


@dataclass
class Rock:
    rock_id: int
    score: float
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    #: From the mask when there is one (pixel count), else None (box ellipse is used).
    mask_area_px: float | None = None
    major_axis_px: float | None = None
    minor_axis_px: float | None = None
    #: Ground contact point in pixels: bottom centre of the box, or the lowest mask pixels.
    contact_x: float | None = None
    contact_y: float | None = None
    range_m: float | None = None
    diameter_m: float | None = None
    ground_x_m: float | None = None
    ground_y_m: float | None = None
    height_m: float | None = None
    size_flag: str | None = None
    #: Position in the label's SITE_FRAME (PDS products whose label gives the rover pose).
    site_x_m: float | None = None
    site_y_m: float | None = None
    site_z_m: float | None = None

    @property
    def ground_contact(self) -> tuple[float, float]:
        """Where the rock meets the ground in the image: from its mask when one was measured,
        else the bottom centre of its box."""
        return (self.contact_x if self.contact_x is not None else (self.x_min + self.x_max) / 2,
                self.contact_y if self.contact_y is not None else self.y_max)

    @property
    def width_px(self) -> float:
        return self.x_max - self.x_min

    @property
    def height_px(self) -> float:
        return self.y_max - self.y_min

    @property
    def area_px(self) -> float:
        if self.mask_area_px is not None:
            return self.mask_area_px
        return math.pi / 4 * self.width_px * self.height_px

    @property
    def diameter_px(self) -> float:
        if self.mask_area_px is not None:
            return 2 * math.sqrt(self.mask_area_px / math.pi)
        return (self.width_px + self.height_px) / 2

    def row(self, with_masks: bool, with_geometry: bool) -> dict[str, Any]:
        values = {"rock_id": self.rock_id, "score": round(self.score, 5),
                  "x_min": self.x_min, "y_min": self.y_min, "x_max": self.x_max, "y_max": self.y_max,
                  "x_center": (self.x_min + self.x_max) / 2, "y_center": (self.y_min + self.y_max) / 2,
                  "width_px": self.width_px, "height_px": self.height_px,
                  "diameter_px": self.diameter_px, "area_px": self.area_px,
                  "range_m": self.range_m, "diameter_m": self.diameter_m}
        if with_masks:
            values.update(major_axis_px=self.major_axis_px, minor_axis_px=self.minor_axis_px)
        if with_geometry:
            values.update(ground_x_m=self.ground_x_m, ground_y_m=self.ground_y_m,
                          height_m=self.height_m, size_flag=self.size_flag, site_x_m=self.site_x_m,
                          site_y_m=self.site_y_m, site_z_m=self.site_z_m)
        return {k: (round(v, 3) if isinstance(v, float) and k != "score" else v) for k, v in values.items()}


def catalog_columns(with_masks: bool, with_geometry: bool) -> list[str]:
    return BASE_COLUMNS + (MASK_COLUMNS if with_masks else []) + (GEOMETRY_COLUMNS if with_geometry else [])


@dataclass
class ImageCatalog:
    """Everything written for one image."""

    image: str
    width: int
    height: int
    sha256: str
    rocks: list[Rock]
    with_masks: bool = False
    with_geometry: bool = False
    context: dict[str, Any] = field(default_factory=dict)  # checkpoint, thresholds, tiling, camera
    #: SHA-256 of every file the input is made of (a PDS product's data and detached label), by
    #: resolved path: a resumed run redoes the image when any of them changed. None: hashed
    #: when the catalog is written (inputs.product_sha256).
    product_files: dict[str, str | None] | None = None

    def rows(self) -> list[dict[str, Any]]:
        return [rock.row(self.with_masks, self.with_geometry) for rock in self.rocks]

    def columns(self) -> list[str]:
        return catalog_columns(self.with_masks, self.with_geometry)


#: Where one image's catalog file of a format goes (``OutputLayout.catalog_file`` for one key).
CatalogPaths = Callable[[str], Path]


def write_catalog(catalog: ImageCatalog, paths: CatalogPaths, formats: tuple[str, ...]) -> list[Path]:
    """Write the catalog in each format; the JSON, which marks it complete, is written last."""
    written = []
    if "csv" in formats:
        written.append(write_rows_csv(paths("csv"), catalog.columns(), catalog.rows()))
    if "parquet" in formats:
        written.append(write_rows_parquet(paths("parquet"), catalog.columns(), catalog.rows()))
    product_files = catalog.product_files
    if product_files is None:
        from rockdet.io.inputs import product_sha256

        product_files = product_sha256(Path(catalog.image), catalog.sha256)
    document = {"catalog_version": CATALOG_VERSION, "complete": True, "image": catalog.image,
                "width": catalog.width, "height": catalog.height, "sha256": catalog.sha256,
                **catalog.context, "product_files": product_files, "columns": catalog.columns(), "rock_count": len(catalog.rocks),
                "formats": list(formats), "rocks": catalog.rows()}
    write_json_atomic(paths("json"), document)
    return [*written, paths("json")]


def read_catalog_json(path: Path, strict: bool = False) -> dict[str, Any]:
    """A catalog JSON as written by write_catalog, or one RockdetError line saying why not.
    ``strict``: every rock a row of the catalog's columns with values of their types, as
    write_catalog writes them (what a resumed run keeps and rocks.csv copies)."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RockdetError(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
    if not isinstance(document, dict) or not isinstance(document.get("rocks", []), list):
        raise RockdetError(f"{path}: not a rockdet catalog (expected an object with a 'rocks' list)")
    problem = catalog_problem(document) if strict else None
    if problem:
        raise RockdetError(f"{path}: not a rockdet catalog ({problem})")
    return document


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
    if not paths("json").exists():
        return None, None
    try:
        document = read_catalog_json(paths("json"), strict=True)
    except RockdetError as exc:
        return None, str(exc)
    if document.get("complete") is not True:
        return None, f"{paths('json')}: not marked complete"
    missing = [fmt for fmt in formats if fmt in FORMATS and not paths(fmt).is_file()]  # not batch formats
    return (None, f"{paths('json')}: its {', '.join(missing)} file is missing") if missing else (document, None)


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
        raise RockdetError("--format parquet needs pyarrow: pip install 'rockdet[parquet]'") from None
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

