"""report.html: one self-contained page to browse a predict batch.

No network and no CDN: the page, a script with one row per image (``report_images.js``, loaded by
a plain <script> tag, which browsers allow from file:// where fetch() is refused), the size
histogram and the thumbnails are files beside it. The page itself holds the summary only, so its
size does not grow with the batch; the table shows one page of images at a time, sorted by any
column, and thumbnails load lazily. 10,000 images make a data file of about 2 MB and a page that
renders a hundred rows at a time. The data file is written a row at a time as the catalogs stream
past (ReportData), so building it holds one catalog, not the batch.
"""

from __future__ import annotations

import html
import json
import math
import os
import statistics
from array import array
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rockdet.atomic import atomic_path, write_text_atomic
from rockdet.catalog.files import read_catalog_json
from rockdet.errors import RockdetError
from rockdet.io.layout import (
    CATALOG_DIR,
    OVERLAY_DIR,
    REPORT_FILE,
    REPORT_FILES,
    SFD_FILES,
    SITE_MAP_FILE,
    SUMMARY_FILE,
    THUMBNAIL_DIR,
)
from rockdet.io.output_guard import check_output_files_in, check_output_folder
from rockdet.report.histogram import write_size_histogram

DATA_FILE, HISTOGRAM_FILE = REPORT_FILES[1], REPORT_FILES[2]
#: Rows of the per-image table shown at once.
ROWS_PER_PAGE = 100


class ReportData:
    """report_images.js written a row at a time as the batch's catalogs stream past (one image's
    rocks in memory at once), and the pixel sizes kept for the histogram; ``finish`` writes the
    page. The data file replaces the old one only when ``finish`` succeeds."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        check_output_folder(self.out_dir, "report folder")
        check_output_files_in(self.out_dir, REPORT_FILES, "report folder")
        self.rows = 0
        self.diameters = array("d")
        self._stack = ExitStack()
        temp = self._stack.enter_context(atomic_path(self.out_dir / DATA_FILE))
        self._handle = self._stack.enter_context(temp.open("w", encoding="utf-8"))
        self._handle.write("window.ROCKDET_IMAGES = [")

    def add(self, key: str, rocks: Any) -> None:
        """One image's row from its catalog's rock rows (a row marked unreadable if they are not rows)."""
        try:
            sizes_px, sizes_m = _sizes(rocks)
        except ValueError as exc:
            self.add_unreadable(key, str(exc))
            return
        self.diameters.extend(sizes_px)
        thumbnail, overlay = f"{THUMBNAIL_DIR}/{key}.jpg", f"{OVERLAY_DIR}/{key}.png"
        csv_file = f"{CATALOG_DIR}/{key}.csv"
        listed = csv_file if self._has(csv_file) else f"{CATALOG_DIR}/{key}.json"
        self._write({
            "image": key, "rocks": len(rocks),
            "largest_px": round(max(sizes_px), 1) if sizes_px else None,
            "median_px": round(statistics.median(sizes_px), 1) if sizes_px else None,
            "median_m": round(statistics.median(sizes_m), 3) if sizes_m else None,
            "catalog": link(listed),
            "thumbnail": link(thumbnail) if self._has(thumbnail) else None,
            "overlay": link(overlay) if self._has(overlay) else None})

    def _has(self, relative: str) -> bool:
        return os.path.isfile(os.path.join(self.out_dir, relative))  # a row per image: no pathlib

    def add_unreadable(self, key: str, reason: str) -> None:
        self._write(_unreadable_row(key, reason))

    def _write(self, row: dict[str, Any]) -> None:
        self._handle.write(("," if self.rows else "") + "\n" + json.dumps(row, separators=(",", ":")))
        self.rows += 1

    def finish(self, summary: dict[str, Any]) -> Path:
        """Put the data file in place, draw the histogram and write report.html."""
        self._handle.write("\n];\n")
        self._stack.close()
        #: Whether the size histogram was drawn (the page shows it).
        self.histogram = write_size_histogram(self.diameters, self.out_dir / HISTOGRAM_FILE)
        return write_report_page(self.out_dir, summary, self.rows, self.histogram)

    def abandon(self) -> None:
        """Leave the old data file as it was (the batch files could not be built)."""
        self._stack.__exit__(RuntimeError, RuntimeError("abandoned"), None)


def write_report_page(out_dir: Path, summary: dict[str, Any], rows: int, histogram: bool) -> Path:
    """report.html for ``summary``, over a data file of ``rows`` images already in place."""
    out_dir = Path(out_dir)
    sfd_written = isinstance(summary.get("sfd"), dict) and summary["sfd"].get("status") not in (None, "error")
    site_map = summary.get("site_map")
    page = _page(summary, rows, histogram, sfd_written or (out_dir / SFD_FILES[1]).is_file(),
                 bool(isinstance(site_map, dict) and site_map.get("written")) or (out_dir / SITE_MAP_FILE).is_file())
    write_text_atomic(out_dir / REPORT_FILE, page)
    return out_dir / REPORT_FILE


def rebuild_report(out_dir: Path) -> Path:
    """`rockdet report OUT`: report.html rebuilt from the summary and catalogs on disk, read one
    at a time. A damaged folder gives one line (summary.json) or a row marked unreadable (a catalog)."""
    out_dir = Path(out_dir)
    summary_path = out_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise RockdetError(f"{out_dir}: no {SUMMARY_FILE}; give a rockdet predict output folder")
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RockdetError(f"{summary_path}: not readable JSON ({exc.__class__.__name__})") from None
    if not isinstance(summary, dict):
        raise RockdetError(f"{summary_path}: not a rockdet predict summary (expected an object, got "
                           f"{type(summary).__name__})")
    data = ReportData(out_dir)
    try:
        folder = out_dir / CATALOG_DIR
        for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
            key = path.relative_to(folder).as_posix()[: -len(".json")]
            try:
                data.add(key, read_catalog_json(path).get("rocks", []))
            except RockdetError as exc:
                data.add_unreadable(key, str(exc).removeprefix(f"{path}: "))
    except BaseException:
        data.abandon()
        raise
    return data.finish(summary)


def link(path: str) -> str:
    """A relative link to ``path``: every segment percent-encoded, so '#', '?', '&' and '%' in a
    legal file name stay part of the name."""
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


def _unreadable_row(key: str, reason: str) -> dict[str, Any]:
    catalog = f"{CATALOG_DIR}/{key}.json"
    return {"image": key, "rocks": None, "largest_px": None, "median_px": None, "median_m": None,
            "catalog": link(catalog), "thumbnail": None, "overlay": None, "unreadable": reason}


def _sizes(rocks: Any) -> tuple[list[float], list[float]]:
    """Pixel and metric diameters of a catalog's rocks; ValueError naming the first bad one."""
    if not isinstance(rocks, list):
        raise ValueError(f"'rocks' is a {type(rocks).__name__}, not a list")
    sizes: dict[str, list[float]] = {"diameter_px": [], "diameter_m": []}
    for index, rock in enumerate(rocks):
        if not isinstance(rock, dict):
            raise ValueError(f"rocks[{index}] is {str(rock)[:40]!r}, not a rock")
        for name, values in sizes.items():
            value = rock.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"rocks[{index}].{name} is {str(value)[:40]!r}, not a finite number")
            values.append(float(value))
    return sizes["diameter_px"], sizes["diameter_m"]


def _page(summary: dict[str, Any], images: int, histogram: bool, sfd: bool, site_map: bool) -> str:
    escape = html.escape
    listed = summary.get("failures")
    failures = "".join(f"<li><code>{escape(str(f.get('image', '?')))}</code>: {escape(str(f.get('reason', '?')))}</li>"
                       if isinstance(f, dict) else f"<li>{escape(str(f)[:200])}</li>"
                       for f in (listed if isinstance(listed, list) else []))
    tiling = summary.get("tiling") if isinstance(summary.get("tiling"), dict) else {}
    facts = [("images", f"{summary.get('images', images)}: {summary.get('done', 0)} done, "
                        f"{summary.get('skipped', 0)} skipped (already complete), {summary.get('failed', 0)} failed"),
             ("rocks", f"{summary.get('rocks_total', 0)} in the batch, {summary.get('rocks_this_run', 0)} found this run"),
             ("score threshold", summary.get("score_threshold")),
             ("tiling", f"{tiling.get('tile')} px tiles, overlap {tiling.get('overlap')}, merge {tiling.get('merge')}"),
             ("checkpoint", f"{summary.get('checkpoint')} ({summary.get('arch')}, {summary.get('model_form')})"),
             ("time", f"{summary.get('seconds')} s, {summary.get('images_per_second')} images/s"),
             ("files", '<a href="rocks.csv">rocks.csv</a> (every rock), <a href="summary.json">summary.json</a>')]
    rows = "".join(f"<tr><th>{escape(name)}</th><td>{value if name == 'files' else escape(str(value))}</td></tr>"
                   for name, value in facts)
    figures = "".join(f'<figure><img src="{name}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
                      for name, alt, shown in ((HISTOGRAM_FILE, "rock sizes in the batch", histogram),
                                               (SFD_FILES[1], "size-frequency distribution", sfd),
                                               (SITE_MAP_FILE, "site rock map", site_map)) if shown)
    return PAGE.format(title="rockdet batch report", facts=rows,
                       failures=f"<h2>Failed images</h2><ul>{failures}</ul>" if failures else "",
                       figures=figures, data=DATA_FILE, per_page=ROWS_PER_PAGE, images=images)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 0.25em 0.6em; text-align: left; }}
#images th {{ cursor: pointer; background: #eee; }} #images tr:nth-child(even) {{ background: #f7f7f7; }}
#images img {{ height: 72px; }} figure {{ display: inline-block; margin: 0 1em 1em 0; }}
figure img {{ max-width: 520px; }} .pager button {{ margin-right: 0.5em; }}
#images tr.unreadable td {{ color: #a00; }}
</style></head><body>
<h1>{title}</h1>
<table class="facts">{facts}</table>
{failures}
<h2>Figures</h2>{figures}
<h2>Images (<span id="count">{images}</span>)</h2>
<p class="pager"><button id="prev">previous</button><button id="next">next</button><span id="where"></span></p>
<table id="images"><thead><tr>
<th data-key="image">image</th><th>overlay</th><th data-key="rocks">rocks</th>
<th data-key="largest_px">largest (px)</th><th data-key="median_px">median diameter (px)</th>
<th data-key="median_m">median diameter (m)</th><th>catalog</th></tr></thead><tbody></tbody></table>
<script src="{data}"></script>
<script>
// Rows come in the batch's input order; the table starts sorted by image name.
const rows = (window.ROCKDET_IMAGES || []).sort((a, b) => a.image < b.image ? -1 : a.image > b.image ? 1 : 0),
      perPage = {per_page};
let page = 0, key = "image", ascending = true;
const cell = v => (v === null || v === undefined) ? "" : v;
function text(v) {{ const d = document.createElement("div"); d.textContent = cell(v); return d.innerHTML; }}
function render() {{
  const pages = Math.max(1, Math.ceil(rows.length / perPage));
  page = Math.min(Math.max(page, 0), pages - 1);
  const body = rows.slice(page * perPage, (page + 1) * perPage).map(r => {{
    // Links arrive percent-encoded per path segment (report.html.link): used as they are.
    const thumb = r.thumbnail ?
      `<a href="${{r.overlay || r.thumbnail}}"><img loading="lazy" src="${{r.thumbnail}}" alt="overlay"></a>` : "";
    if (r.unreadable) return `<tr class="unreadable"><td>${{text(r.image)}}</td><td></td>` +
           `<td colspan="4">unreadable: ${{text(r.unreadable)}}</td><td><a href="${{r.catalog}}">catalog</a></td></tr>`;
    return `<tr><td>${{text(r.image)}}</td><td>${{thumb}}</td><td>${{text(r.rocks)}}</td>` +
           `<td>${{text(r.largest_px)}}</td><td>${{text(r.median_px)}}</td><td>${{text(r.median_m)}}</td>` +
           `<td><a href="${{r.catalog}}">catalog</a></td></tr>`;
  }}).join("");
  document.querySelector("#images tbody").innerHTML = body;
  document.getElementById("where").textContent = ` page ${{page + 1}} of ${{pages}}`;
}}
document.querySelectorAll("#images th[data-key]").forEach(th => th.addEventListener("click", () => {{
  ascending = key === th.dataset.key ? !ascending : true; key = th.dataset.key;
  rows.sort((a, b) => {{ const x = a[key], y = b[key];
    if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
    return (x < y ? -1 : 1) * (ascending ? 1 : -1); }});
  page = 0; render();
}}));
document.getElementById("prev").onclick = () => {{ page -= 1; render(); }};
document.getElementById("next").onclick = () => {{ page += 1; render(); }};
render();
</script></body></html>
"""
