"""One image's catalog: its rocks with the image's metadata, as `rockdet predict` writes it per
image and a Predictor returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rockdet.catalog.files import CATALOG_VERSION, CatalogPaths, write_catalog_json, write_rows_csv, write_rows_parquet
from rockdet.catalog.rock import Rock, catalog_columns
from rockdet.errors import RockdetError
from rockdet.io.layout import OutputLayout, safe_key

#: The files of a catalog unless asked otherwise: the JSON marks it complete.
DEFAULT_FORMATS = ("csv", "json")


@dataclass(frozen=True)
class Catalog:
    """The rocks of one image, with what was known of the image and how they were found."""

    #: The image's path (or the name given to pixels passed as an array).
    image: str
    width: int
    height: int
    rocks: tuple[Rock, ...]
    sha256: str | None = None
    with_masks: bool = False
    #: Rocks carry metric columns (a camera model sized them).
    with_geometry: bool = False
    #: Recorded in the catalog JSON: checkpoint, operating point, tiling, camera, sizing results.
    context: Mapping[str, Any] = field(default_factory=dict)
    #: SHA-256 of every file the input is made of (a PDS product's data and detached label), by
    #: resolved path: a resumed run redoes the image when any of them changed.
    product_files: Mapping[str, str | None] | None = None

    @property
    def key(self) -> str:
        """Where the catalog goes under ``OUT/catalogs`` when written alone: the image's name."""
        return safe_key(Path(self.image).name)

    def columns(self) -> list[str]:
        return catalog_columns(self.with_masks, self.with_geometry)

    def rows(self) -> list[dict[str, Any]]:
        return [rock.row(self.with_masks, self.with_geometry) for rock in self.rocks]

    def document(self, formats: tuple[str, ...] = DEFAULT_FORMATS,
                 rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The catalog JSON: the image, how its rocks were found, and the rocks (``rows``: this
        catalog's rows, when the caller has them already)."""
        return {"catalog_version": CATALOG_VERSION, "complete": True, "image": self.image,
                "width": self.width, "height": self.height, "sha256": self.sha256, **self.context,
                "product_files": dict(self.product_files) if self.product_files is not None else None,
                "columns": self.columns(), "rock_count": len(self.rocks), "formats": list(formats),
                "rocks": self.rows() if rows is None else rows}

    def to_pandas(self):
        """The rocks as a pandas DataFrame, one row per rock, in the catalog's columns."""
        try:
            import pandas
        except ImportError:
            raise RockdetError("Catalog.to_pandas needs pandas: pip install 'rockdet[pandas]'") from None
        return pandas.DataFrame(self.rows(), columns=self.columns())

    def write(self, out: Path | str, formats: tuple[str, ...] = DEFAULT_FORMATS, key: str | None = None) -> list[Path]:
        """Write the catalog under ``out`` as `rockdet predict` lays it out
        (``out/catalogs/<key>.csv`` and ``.json``); returns the files written."""
        layout = OutputLayout.at(out)
        return write_catalog(self, lambda fmt: layout.catalog_file(key or self.key, fmt), formats)


def write_catalog(catalog: Catalog, paths: CatalogPaths, formats: tuple[str, ...]) -> list[Path]:
    """Write the catalog in each format; the JSON, which marks it complete, is written last."""
    if "json" not in formats:
        raise RockdetError(f"catalog formats {list(formats)}: include json (it marks a catalog complete)")
    written, rows = [], catalog.rows()
    if "csv" in formats:
        written.append(write_rows_csv(paths("csv"), catalog.columns(), rows))
    if "parquet" in formats:
        written.append(write_rows_parquet(paths("parquet"), catalog.columns(), rows))
    document = catalog.document(formats, rows)
    if document["product_files"] is None and catalog.sha256 is not None and Path(catalog.image).is_file():
        from rockdet.io.inputs import product_sha256

        document["product_files"] = product_sha256(Path(catalog.image), catalog.sha256)
    write_catalog_json(paths("json"), document)
    return [*written, paths("json")]
