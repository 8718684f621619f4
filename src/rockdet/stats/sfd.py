"""Rock size-frequency statistics: N(≥D) per m², F(≥D), Golombek–Rapp and power-law fits.

Golombek & Rapp (1997): the cumulative fractional area covered by rocks of diameter ≥ D (m) is
F_k(D) = k·exp(−q(k)·D) with q(k) = 1.79 + 0.152/k, k being the total rock abundance.
Small rocks are under-detected; fits use only diameters at or above a completeness cut-off,
estimated as the roll-over (peak) of the log-binned size distribution unless one is given.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from scipy.optimize import minimize_scalar

from rockdet.catalog.files import read_catalog_csv, read_catalog_json
from rockdet.errors import RockdetError
from rockdet.io.layout import BATCH_FILES, CATALOG_DIR

log = logging.getLogger(__name__)

Q_CONSTANT, Q_SLOPE = 1.79, 0.152
REFERENCE_K = (0.01, 0.05, 0.10, 0.20)
#: Fewer rocks than this above the cut-off give no fit, only the counts.
MIN_ROCKS_FOR_FIT = 5
BINS_PER_DECADE = 8
K_BOUNDS = (1e-4, 0.99)
#: A fitted k this close to a search bound (relative, in log k) is the bound, not a fit.
AT_BOUND_TOLERANCE = 1e-3
#: Largest diameter taken as a rock (m). Rover and descent cameras size rocks of centimetres to
#: a few metres, and the largest blocks mapped on the Moon or Mars are some tens of metres;
#: beyond 100 m a "diameter" is a camera-model or file error. It also keeps the model's
#: exp(-q(k) D) above float underflow (it reaches 0 near D = 400 m), so every fit stays finite.
MAX_DIAMETER_M = 100.0
#: Largest imaged ground area (m²): more than the whole surface of the Earth (5.1e14 m²) is a
#: corrupted footprint, and N(>=D) = count / area would underflow.
MAX_AREA_M2 = 1e15


def golombek_rapp_q(k: float) -> float:
    return Q_CONSTANT + Q_SLOPE / k


def golombek_rapp_fraction(diameters: np.ndarray, k: float) -> np.ndarray:
    """F_k(≥D): cumulative fractional area of rocks at least D metres across."""
    return k * np.exp(-golombek_rapp_q(k) * np.asarray(diameters, float))


@dataclass
class SfdResult:
    rocks: int
    area_m2: float
    status: str  # ok | at_bound (k at a search bound: no fit) | insufficient_data
    message: str = ""
    completeness_m: float | None = None
    diameter_range_m: list[float] | None = None
    rocks_used: int = 0
    k: float | None = None
    k_ci95: list[float] | None = None
    power_law_exponent: float | None = None
    power_law_exponent_ci95: list[float] | None = None
    power_law_coefficient: float | None = None
    cumulative: dict = field(default_factory=dict)


def cumulative_curves(diameters: np.ndarray, area_m2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted diameters (descending), N(≥D) per m² and F(≥D) at each rock."""
    d = np.sort(np.asarray(diameters, float))[::-1]
    number = np.arange(1, len(d) + 1) / area_m2
    fraction = np.cumsum(math.pi / 4 * d ** 2) / area_m2
    return d, number, fraction


def estimate_completeness(diameters: np.ndarray) -> float:
    """Left edge of the most populated log bin: below it, detection misses rocks."""
    d = np.asarray(diameters, float)
    low = math.floor(math.log10(d.min()) * BINS_PER_DECADE)
    high = math.ceil(math.log10(d.max()) * BINS_PER_DECADE) + 1
    counts, edges = np.histogram(d, bins=10 ** (np.arange(low, high + 1) / BINS_PER_DECADE))
    return float(edges[int(np.argmax(counts))])


def fit_k(diameters: np.ndarray, area_m2: float) -> float:
    """k minimising the squared log misfit of F(≥D) at every rock."""
    d, _, fraction = cumulative_curves(diameters, area_m2)
    log_observed = np.log(fraction)

    def misfit(log_k: float) -> float:
        return float(np.sum((log_observed - np.log(golombek_rapp_fraction(d, math.exp(log_k)))) ** 2))

    result = minimize_scalar(misfit, bounds=tuple(math.log(b) for b in K_BOUNDS), method="bounded")
    return float(math.exp(result.x))


def fit_power_law(diameters: np.ndarray, area_m2: float) -> tuple[float, float]:
    """N(≥D) = A·D^−b by least squares in log-log; returns (b, A)."""
    d, number, _ = cumulative_curves(diameters, area_m2)
    slope, intercept = np.polyfit(np.log10(d), np.log10(number), 1)
    return float(-slope), float(10 ** intercept)


def sfd_statistics(diameters_m, area_m2: float, min_diameter_m: float | None = None,
                   bootstrap: int = 500, seed: int = 0) -> SfdResult:
    """Counts, cumulative curves and fits with bootstrap 95 % intervals; never raises on few rocks.
    Diameters must be finite, above 0 and at most ``MAX_DIAMETER_M`` (None is no size)."""
    d = np.asarray([x for x in diameters_m if x is not None], float)
    bad = d[~(np.isfinite(d) & (d > 0) & (d <= MAX_DIAMETER_M))]
    if len(bad):
        raise RockdetError(f"{len(bad)} diameter(s) (e.g. {bad[0]:.3g}) are not a rock size in "
                           f"(0, {MAX_DIAMETER_M:g}] m; leave them out")
    if area_m2 is None or not math.isfinite(area_m2) or area_m2 <= 0:
        raise RockdetError(f"SFD needs the imaged ground area in m² (a camera, or --area-m2), got {area_m2}")
    if area_m2 > MAX_AREA_M2:
        raise RockdetError(f"imaged ground area {area_m2:.3g} m² is larger than any planetary scene "
                           f"({MAX_AREA_M2:g} m², more than the Earth's surface): a corrupted footprint?")
    result = SfdResult(rocks=len(d), area_m2=float(area_m2), status="insufficient_data")
    if len(d) == 0:
        result.message = "no rocks with a metric size"
        return result
    sorted_d, number, fraction = cumulative_curves(d, area_m2)
    result.cumulative = {"diameter_m": sorted_d.tolist(), "n_per_m2": number.tolist(),
                         "fractional_area": fraction.tolist()}
    cut = min_diameter_m if min_diameter_m is not None else estimate_completeness(d)
    used = d[d >= cut]
    result.completeness_m, result.rocks_used = float(cut), int(len(used))
    if len(used) < MIN_ROCKS_FOR_FIT or np.ptp(used) <= 0:
        result.message = (f"{len(used)} rock(s) at or above the completeness cut-off {cut:.3g} m; "
                          f"a fit needs at least {MIN_ROCKS_FOR_FIT} of different sizes")
        return result
    result.diameter_range_m = [float(used.min()), float(used.max())]
    result.k = fit_k(used, area_m2)
    result.power_law_exponent, result.power_law_coefficient = fit_power_law(used, area_m2)
    rng = np.random.default_rng(seed)
    ks, exponents = [], []
    for _ in range(bootstrap):
        sample = rng.choice(used, size=len(used), replace=True)
        if np.ptp(sample) > 0:
            ks.append(fit_k(sample, area_m2))
            exponents.append(fit_power_law(sample, area_m2)[0])
    if ks:
        result.k_ci95 = np.percentile(ks, [2.5, 97.5]).tolist()
        result.power_law_exponent_ci95 = np.percentile(exponents, [2.5, 97.5]).tolist()
    bound = next((b for b in K_BOUNDS if abs(math.log(result.k / b)) < AT_BOUND_TOLERANCE), None)
    if bound is not None:
        result.status = "at_bound"
        result.message = (f"the Golombek-Rapp fit ran into the search bound k = {bound:g} "
                          f"(searched {K_BOUNDS[0]:g}..{K_BOUNDS[1]:g}): these rocks do not follow the model")
    else:
        result.status = "ok"
    return result


@dataclass
class MetricSizes:
    """Metric diameters read from catalogs, and what was left out on the way."""

    diameters: list[float]
    area_m2: float
    #: Catalog files that could not be read, each with its reason.
    unreadable: list[str] = field(default_factory=list)
    #: Diameters that were not a finite number above zero.
    invalid_diameters: int = 0
    #: Diameters above MAX_DIAMETER_M (file or camera-model errors), left out.
    absurd_diameters: int = 0

    def left_out(self) -> dict:
        """What sfd.json records as left out of the statistics."""
        return {"unreadable_catalogs": self.unreadable, "invalid_diameters": self.invalid_diameters,
                f"diameters_above_{MAX_DIAMETER_M:g}_m": self.absurd_diameters}


def load_sizes(path: Path, area_m2: float | None = None) -> MetricSizes:
    """Metric diameters and imaged area from a predict output folder, catalog JSON or CSV."""
    path = Path(path)
    if path.is_dir():
        return _load_folder(path, area_m2)
    if not path.is_file():
        raise RockdetError(f"{path}: catalog not found")
    if path.suffix == ".json":
        document = read_catalog_json(path)
        rows, sidecar_area = document.get("rocks", []), document.get("ground_area_m2")
    else:
        rows = read_catalog_csv(path)
        sidecar = path.with_suffix(".json")
        sidecar_area = read_catalog_json(sidecar).get("ground_area_m2") if sidecar.is_file() else None
    if rows and (not isinstance(rows[0], dict) or "diameter_m" not in rows[0]):
        raise RockdetError(f"{path}: no diameter_m column; is this a rockdet catalog?")
    area = area_m2 or sidecar_area
    if not area:
        raise RockdetError(f"{path}: imaged ground area unknown; give --area-m2")
    area = _area(area)
    if area is None:
        raise RockdetError(f"{path}: ground_area_m2 is not a finite area above 0; give --area-m2")
    sizes = MetricSizes([], area)
    _add_diameters(sizes, rows)
    return sizes


def _load_folder(path: Path, area_m2: float | None) -> MetricSizes:
    catalogs = path / CATALOG_DIR if (path / CATALOG_DIR).is_dir() else path
    documents, unreadable = [], []
    for document_path in sorted(catalogs.rglob("*.json")):
        if document_path.parent == path and document_path.name in BATCH_FILES:
            continue
        try:
            document = read_catalog_json(document_path)
        except RockdetError as exc:
            unreadable.append(str(exc))
            continue
        if not document.get("complete"):
            unreadable.append(f"{document_path}: not a complete rockdet catalog")
            continue
        documents.append((str(document_path), document.get("rocks", []), document.get("ground_area_m2")))
    sizes = sizes_of_catalogs(documents)
    sizes.unreadable[:0] = unreadable
    for problem in unreadable:
        log.warning("left out of the SFD: %s", problem)
    if area_m2 is None and sizes.area_m2 <= 0:
        raise RockdetError(f"{path}: no catalog with a ground area; run predict with --camera "
                           "or give --area-m2")
    sizes.area_m2 = area_m2 or sizes.area_m2
    return sizes


def sizes_of_catalogs(catalogs: Iterable[tuple[str, list, Any]]) -> MetricSizes:
    """Metric diameters and the summed ground area of (name, rock rows, ground_area_m2) catalogs:
    a predict folder read from disk, or the catalogs a batch run holds."""
    sizes = MetricSizes([], 0.0)
    for name, rows, raw_area in catalogs:
        area = 0.0 if raw_area is None else _area(raw_area)
        if area is None:  # its rocks stand on ground of unknown size: leave the image out
            sizes.unreadable.append(f"{name}: ground_area_m2 {raw_area!r} is not a finite area >= 0")
            log.warning("left out of the SFD: %s", sizes.unreadable[-1])
            continue
        _add_diameters(sizes, rows)
        sizes.area_m2 += area
    if not math.isfinite(sizes.area_m2):
        raise RockdetError(f"the catalogs' ground areas sum to {sizes.area_m2} m²; a footprint is corrupted")
    return sizes


def _area(value) -> float | None:
    """A catalog's ground area if it is a finite number >= 0 (None otherwise)."""
    number = _number(value)
    return number if number is not None and number >= 0 else None


def _add_diameters(sizes: MetricSizes, rows: list) -> None:
    """Add the rows' finite diameters in (0, MAX_DIAMETER_M], counting the others by reason
    (empty cells are no size, not a problem)."""
    values = [row.get("diameter_m") if isinstance(row, dict) else "row" for row in rows]
    numbers = [_number(v) for v in values if v not in (None, "")]
    valid = [v for v in numbers if v is not None and 0 < v <= MAX_DIAMETER_M]
    absurd = sum(1 for v in numbers if v is not None and v > MAX_DIAMETER_M)
    sizes.diameters += valid
    sizes.absurd_diameters += absurd
    sizes.invalid_diameters += len(numbers) - len(valid) - absurd


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def sample_golombek_rapp(rng: np.random.Generator, k: float, area_m2: float, d_min: float,
                         d_max: float) -> np.ndarray:
    """Rock diameters on ``area_m2`` drawn from the model between d_min and d_max.

    From F(≥D) = k·exp(−qD): the number density is n(D) = (4/π)·k·q·exp(−qD)/D² per m² per m;
    the count is Poisson, the sizes come from its numerically inverted cumulative distribution.
    """
    q = golombek_rapp_q(k)
    grid = np.geomspace(d_min, d_max, 4000)
    density = 4 / math.pi * k * q * np.exp(-q * grid) / grid ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    count = rng.poisson(cumulative[-1] * area_m2)
    return np.interp(rng.random(count) * cumulative[-1], cumulative, grid)
