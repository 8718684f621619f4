"""SFD statistics: known k recovered, power law, completeness, small catalogs, the sfd command."""

import json
import math

import numpy as np
import pytest

from rockdet.catalog.files import write_rows_csv
from rockdet.cli.main import main
from rockdet.stats.sfd import golombek_rapp_fraction, sample_golombek_rapp, sfd_statistics


@pytest.mark.parametrize("k", [0.03, 0.08, 0.15])
def test_fitted_k_is_recovered_from_rocks_drawn_from_the_model(k):
    rng = np.random.default_rng(1)
    area = 2000.0
    diameters = sample_golombek_rapp(rng, k, area, d_min=0.1, d_max=3.0)
    result = sfd_statistics(diameters, area, min_diameter_m=0.1, bootstrap=100)
    assert result.status == "ok"
    assert result.k == pytest.approx(k, rel=0.2)
    assert result.k_ci95[0] <= result.k <= result.k_ci95[1]
    assert result.diameter_range_m[0] >= 0.1


def test_sampler_matches_the_model_fraction():
    rng = np.random.default_rng(2)
    diameters = sample_golombek_rapp(rng, 0.1, 5000.0, d_min=0.2, d_max=3.0)
    observed = sum(math.pi / 4 * d ** 2 for d in diameters if d >= 0.5) / 5000.0
    expected = golombek_rapp_fraction(np.array([0.5]), 0.1)[0] - golombek_rapp_fraction(np.array([3.0]), 0.1)[0]
    assert observed == pytest.approx(expected, rel=0.15)


def test_power_law_exponent_and_estimated_completeness():
    rng = np.random.default_rng(3)
    complete = 0.2 * (1 - rng.random(3000)) ** (-1 / 2.5)  # N(>=D) ~ D^-2.5 above 0.2 m
    missed = rng.uniform(0.05, 0.2, 100)  # a detector sees few rocks below its limit
    result = sfd_statistics(np.concatenate([complete, missed]), 1000.0, bootstrap=50)
    assert 0.15 <= result.completeness_m <= 0.3
    assert result.power_law_exponent == pytest.approx(2.5, rel=0.15)


@pytest.mark.parametrize("diameters", [[], [0.4], [0.3, 0.3, 0.3]])
def test_empty_or_tiny_catalogs_give_a_clear_result(diameters):
    result = sfd_statistics(diameters, 50.0, bootstrap=10)
    assert result.status == "insufficient_data" and result.k is None and result.message
    assert result.rocks == len(diameters)


def test_sfd_command_writes_json_and_plot(tmp_path, capsys):
    rng = np.random.default_rng(4)
    diameters = sample_golombek_rapp(rng, 0.08, 800.0, d_min=0.1, d_max=2.0)
    csv_path = tmp_path / "rocks.csv"
    write_rows_csv(csv_path, ["rock_id", "diameter_m"], [{"rock_id": i, "diameter_m": d} for i, d in enumerate(diameters)])
    assert main(["sfd", str(csv_path), "--out", str(tmp_path / "sfd"), "--area-m2", "800",
                 "--min-diameter-m", "0.1", "--bootstrap", "50"]) == 0
    result = json.loads((tmp_path / "sfd" / "sfd.json").read_text())
    assert result["status"] == "ok" and result["k"] == pytest.approx(0.08, rel=0.25)
    assert (tmp_path / "sfd" / "sfd.png").stat().st_size > 10_000
    assert "Golombek-Rapp k =" in capsys.readouterr().out
    assert main(["sfd", str(csv_path), "--out", str(tmp_path / "sfd2")]) == 2
    assert "area unknown" in capsys.readouterr().err
