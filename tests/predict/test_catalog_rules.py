"""One rock, one row, and no rocks where there are none: what a catalog keeps of the detector's
raw boxes (nested duplicates, boxes around groups, featureless black sky)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from oracle import FixedBoxes, draw_rocks, oracle_info, save, use_model

from rockdet.cli.main import main
from rockdet.predict.detect import detect_image
from rockdet.predict.settings import PredictSettings


def boxes_of(rocks):
    return sorted((r.x_min, r.y_min, r.x_max, r.y_max) for r in rocks)


def predict_command(tmp_path, monkeypatch, model, pixels, name: str) -> list[str]:
    """`rockdet predict` of ``pixels`` saved as in/NAME, with ``model`` behind a checkpoint file
    (catalogs in out/catalogs/)."""
    save(pixels, tmp_path / "in" / name)
    use_model(monkeypatch, model, oracle_info())
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"x")
    return ["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"), str(tmp_path / "in")]


def test_a_box_nested_in_another_box_of_the_same_rock_gives_one_row():
    pixels = draw_rocks(64, 64, [(10, 10, 40, 40)])
    model = FixedBoxes([(10, 10, 40, 40), (15, 15, 30, 30), (20, 22, 38, 39)], [0.9, 0.6, 0.5])
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1), 64)
    assert boxes_of(rocks) == [(10, 10, 40, 40)]


def test_two_touching_rocks_stay_two_rows():
    pixels = draw_rocks(64, 64, [(5, 10, 25, 30), (24, 12, 44, 32)])
    model = FixedBoxes([(5, 10, 25, 30), (24, 12, 44, 32)], [0.9, 0.8])
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1), 64)
    assert boxes_of(rocks) == [(5, 10, 25, 30), (24, 12, 44, 32)]


def test_a_low_scoring_box_around_a_group_of_rocks_is_dropped_and_the_rocks_kept():
    pixels = draw_rocks(64, 64, [(5, 5, 20, 20), (30, 30, 50, 50)])
    model = FixedBoxes([(5, 5, 20, 20), (30, 30, 50, 50), (2, 2, 60, 60)], [0.9, 0.8, 0.3])
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1), 64)
    assert boxes_of(rocks) == [(5, 5, 20, 20), (30, 30, 50, 50)]


def test_nested_boxes_are_kept_when_the_rule_is_off():
    pixels = draw_rocks(64, 64, [(10, 10, 40, 40)])
    model = FixedBoxes([(10, 10, 40, 40), (15, 15, 30, 30)], [0.9, 0.6])
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1, nested_threshold=None), 64)
    assert len(rocks) == 2


def test_nested_duplicates_are_resolved_across_tiles_too():
    pixels = draw_rocks(130, 120, [(50, 40, 80, 70)])
    # In each 64-px tile, a box on the rock's piece and one inside it.
    model = FixedBoxes([(0, 0, 64, 64), (5, 5, 20, 20)], [0.2, 0.9])
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1, tile=64, overlap=0.25), 64)
    areas = [(r.x_max - r.x_min) * (r.y_max - r.y_min) for r in rocks]
    assert max(areas) <= 20 * 20 + 1e-6  # no tile-sized box survives around the small ones


def test_featureless_black_sky_holds_no_rocks(tmp_path, monkeypatch):
    pixels = draw_rocks(64, 64, [(20, 40, 30, 50)])
    pixels[:24] = 0  # black sky above the horizon
    model = FixedBoxes([(5, 2, 15, 12), (20, 40, 30, 50), (30, 14, 40, 30)], [0.9, 0.8, 0.7])
    command = predict_command(tmp_path, monkeypatch, model, pixels, "mast.png")
    assert main([*command, "--score-threshold", "0.1"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "catalogs" / "mast.png.csv")))
    kept = sorted((float(r["x_min"]), float(r["y_min"])) for r in rows)
    # The box wholly on black goes; the one on ground stays, and so does the one across the
    # horizon (10 of its 16 rows are sky: 62 % black, under the 90 % rule).
    assert kept == [(20.0, 40.0), (30.0, 14.0)]


def test_a_box_on_a_black_edge_goes_when_either_common_crop_of_it_is_featureless_black():
    pixels = draw_rocks(64, 64, [])
    pixels[:24] = 0  # black sky in rows 0-23
    # (10, 0)-(30, 26.6): truncated to whole pixels, rows 0-25 (24 of 26 black, 92 %); by the
    # pixels whose centres lie inside it, rows 0-26 (24 of 27, 89 %). A crop either way reads sky.
    on_edge = detect_image(FixedBoxes([(10, 0, 30, 26.6)], [0.9]), pixels, PredictSettings(score_threshold=0.1), 64)
    assert on_edge == []
    # One row lower, 89 % and 86 %: a box reaching into the ground stays.
    lower = detect_image(FixedBoxes([(10, 0, 30, 27.6)], [0.9]), pixels, PredictSettings(score_threshold=0.1), 64)
    assert len(lower) == 1
    # The other way round, sky in rows 40-63 and a box (10, 37.6)-(30, 64): by centres rows 38-63
    # (24 of 26 black, 92 %), truncated rows 37-63 (24 of 27, 89 %).
    pixels = draw_rocks(64, 64, [])
    pixels[40:] = 0
    on_edge = detect_image(FixedBoxes([(10, 37.6, 30, 64)], [0.9]), pixels, PredictSettings(score_threshold=0.1), 64)
    assert on_edge == []


def test_a_small_black_rock_on_bright_ground_is_kept():
    pixels = draw_rocks(64, 64, [])
    pixels[20:30, 20:30] = 0  # 100 of 4096 px: its own small dark region, not sky
    rocks = detect_image(FixedBoxes([(20, 20, 30, 30)], [0.9]), pixels, PredictSettings(score_threshold=0.1), 64)
    assert len(rocks) == 1


def test_dark_but_textured_ground_keeps_its_rocks():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 40, size=(64, 64, 3), dtype=np.uint8)  # dark, noisy, not featureless
    model = FixedBoxes([(10, 10, 30, 30)], [0.9])
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1), 64)
    assert len(rocks) == 1


def test_the_rules_can_be_turned_off_and_a_resume_redoes_what_they_changed(tmp_path, monkeypatch):
    pixels = draw_rocks(64, 64, [(10, 30, 40, 60)])
    pixels[:24] = 0
    model = FixedBoxes([(10, 30, 40, 60), (15, 35, 30, 50), (5, 2, 15, 12)], [0.9, 0.6, 0.8])
    command = predict_command(tmp_path, monkeypatch, model, pixels, "scene.png")
    catalog = tmp_path / "out" / "catalogs" / "scene.png.csv"
    assert main(command) == 0 and len(list(csv.DictReader(open(catalog)))) == 1
    assert main([*command, "--keep-nested", "--keep-on-black"]) == 0  # other settings: redone, not skipped
    assert len(list(csv.DictReader(open(catalog)))) == 3


def test_a_box_cut_by_a_tile_border_is_not_unioned_with_a_tile_sized_box_of_the_next_tile():
    from rockdet.predict.merge import TileDetections, merge_tiles

    # Left tile: a small rock cut by the tile's right border, reaching out past the big box's left
    # edge. Right tile: a higher-scoring box over most of the tile. Their vertical extents do not
    # agree, so they are not two parts of one rock: the big box is not stretched to the left.
    small = TileDetections(torch.tensor([[40.0, 20.0, 64.0, 30.0]]), torch.tensor([0.9]), None, (0, 0, 64, 64))
    big = TileDetections(torch.tensor([[48.0, 0.0, 100.0, 64.0]]), torch.tensor([0.95]), None, (48, 0, 112, 64))
    rocks = merge_tiles([small, big], PredictSettings(score_threshold=0.1))
    assert boxes_of(rocks) == [(48.0, 0.0, 100.0, 64.0)]
    # Two parts of one rock cut by the same border (same vertical extent) are still joined.
    left = TileDetections(torch.tensor([[40.0, 20.0, 64.0, 40.0]]), torch.tensor([0.9]), None, (0, 0, 64, 64))
    right = TileDetections(torch.tensor([[48.0, 20.0, 70.0, 41.0]]), torch.tensor([0.8]), None, (48, 0, 112, 64))
    assert boxes_of(merge_tiles([left, right], PredictSettings(score_threshold=0.1))) == [(40.0, 20.0, 70.0, 41.0)]


class FixedMasks(FixedBoxes):
    """FixedBoxes with a mask per box: the given pixel rectangle (tile coordinates) is rock."""

    def __init__(self, boxes, scores, rock_rectangles):
        super().__init__(boxes, scores)
        self.rock_rectangles = rock_rectangles

    def forward(self, images):
        outputs = super().forward(images)
        for output, image in zip(outputs, images):
            masks = torch.zeros((len(self.boxes), 1, *image.shape[1:]))
            for i, (x0, y0, x1, y1) in enumerate(self.rock_rectangles):
                masks[i, 0, y0:y1, x0:x1] = 1.0
            output["masks"] = masks
        return outputs


def test_a_dropped_nested_box_gives_nothing_to_the_kept_rocks_mask():
    pixels = draw_rocks(64, 64, [(10, 10, 40, 40)])
    # The kept rock's own mask is its left half (15 x 30 px); the nested box it outranks has a
    # mask over the right half, which is not the rock's.
    model = FixedMasks([(10, 10, 40, 40), (24, 12, 39, 39)], [0.9, 0.6], [(10, 10, 25, 40), (25, 12, 39, 39)])
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1), 64)
    assert len(rocks) == 1 and rocks[0].mask_area_px == 15 * 30


def test_above_the_horizon_of_a_known_camera_rocks_are_flagged_or_left_out_on_request(tmp_path, monkeypatch):
    camera = tmp_path / "level.yaml"  # looking level: the horizon is the middle row
    camera.write_text("image_width: 64\nimage_height: 64\nhfov_deg: 60\nheight_m: 1.5\npitch_deg: 0\n")
    command = [*predict_command(tmp_path, monkeypatch, FixedBoxes([(5, 2, 15, 12), (20, 40, 30, 50)], [0.9, 0.8]),
                                draw_rocks(64, 64, [(5, 2, 15, 12), (20, 40, 30, 50)]), "navcam.png"),
               "--camera", str(camera), "--score-threshold", "0.1"]
    catalogs = tmp_path / "out" / "catalogs"
    assert main(command) == 0  # by default kept, unsized (on a slope the terrain rises above it)
    flags = sorted(row["size_flag"] for row in csv.DictReader(open(catalogs / "navcam.png.csv")))
    assert flags == ["above_horizon", "ok"]
    assert main([*command, "--drop-above-horizon"]) == 0  # another rule: redone, not kept
    (rock,) = csv.DictReader(open(catalogs / "navcam.png.csv"))
    assert (rock["rock_id"], rock["y_min"], rock["size_flag"]) == ("1", "40.0", "ok")
    assert json.loads((catalogs / "navcam.png.json").read_text())["left_out_above_horizon"] == 1


def test_boxes_on_black_sky_are_judged_alike_whether_few_or_many():
    from rockdet.predict.featureless import on_featureless_black
    from rockdet.predict.tiling import cut_tile

    pixels = draw_rocks(64, 64, [(20, 40, 30, 50)])
    pixels[:24] = 0
    tile = cut_tile(pixels, (0, 0, 64, 64), None)
    judged = [(5, 2, 15, 12), (20, 40, 30, 50), (30, 14, 40, 30), (0, 0, 64, 20)]
    # A few small boxes are settled box by box; boxes covering more than the tile, from an
    # integral image of the dark pixels. Both must give the same answer.
    few = on_featureless_black(tile, torch.tensor(judged[:3], dtype=torch.float32), 12, 0.9, (64, 64))
    many = on_featureless_black(tile, torch.tensor(judged + [(0, 0, 64, 64)] * 3, dtype=torch.float32),
                                12, 0.9, (64, 64))
    assert few.tolist() == [True, False, False]
    assert many.tolist()[:4] == [True, False, False, True]


def test_a_box_lying_on_black_is_judged_by_the_pixels_inside_it_not_the_ones_it_grazes():
    # The box's pixels (centres inside it) are all black sky; the bright column and row it only
    # grazes (a third of a pixel each) would bring the pixels it touches to 86 % black, under 90 %.
    # A user's check of the catalog (int() corners) sees the same pixels as the rule.
    pixels = draw_rocks(64, 64, [(30, 30, 50, 50)])
    pixels[:20, :9] = 0
    model = FixedBoxes([(0.0, 0.0, 9.3, 20.3), (30, 30, 50, 50)], [0.9, 0.8])
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1), 64)
    assert boxes_of(rocks) == [(30, 30, 50, 50)]


def test_a_completeness_limit_leaves_out_smaller_rocks_and_the_catalog_says_so(tmp_path, monkeypatch):
    pixels = draw_rocks(64, 64, [(4, 4, 34, 34), (44, 44, 52, 50)])
    model = FixedBoxes([(4, 4, 34, 34), (44, 44, 52, 50)], [0.9, 0.8])  # diameters 30 and 7 px
    command = predict_command(tmp_path, monkeypatch, model, pixels, "scene.png")
    catalog = tmp_path / "out" / "catalogs" / "scene.png.csv"
    assert main(command) == 0 and len(list(csv.DictReader(open(catalog)))) == 2
    assert main([*command, "--min-diameter-px", "7.5"]) == 0  # another setting: redone, not skipped
    rows = list(csv.DictReader(open(catalog)))
    assert [(row["rock_id"], float(row["diameter_px"])) for row in rows] == [("1", 30.0)]
    record = json.loads((tmp_path / "out" / "catalogs" / "scene.png.json").read_text())
    assert record["tiling"]["min_diameter_px"] == 7.5


def test_a_completeness_limit_must_be_above_zero(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--checkpoint", "model.ckpt", "--out", "out", "in", "--min-diameter-px", "0"])
    assert "--min-diameter-px: must be a finite number above 0" in capsys.readouterr().err


def test_under_a_completeness_limit_a_small_part_does_not_take_its_whole_rock_with_it():
    # The rock's small bright part outscores the box of the whole rock; the part is under the
    # limit, so the whole rock's box is its row (judged before one rock's boxes become one row).
    pixels = draw_rocks(64, 64, [(10, 10, 40, 40)])
    model = FixedBoxes([(10, 10, 40, 40), (20, 20, 28, 28)], [0.5, 0.9])
    assert boxes_of(detect_image(model, pixels, PredictSettings(score_threshold=0.1), 64)) == [(20, 20, 28, 28)]
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1, min_diameter_px=10), 64)
    assert boxes_of(rocks) == [(10, 10, 40, 40)]


def test_under_a_completeness_limit_whole_rocks_stay_in_an_image_of_several_tiles():
    # Every 64-px tile sees a whole rock and, scoring higher, a small part of it; the tiles' merge
    # keeps the higher score too, so the limit must act before it.
    pixels = draw_rocks(64, 150, [(10, 10, 40, 40)])
    model = FixedBoxes([(10, 10, 40, 40), (20, 20, 28, 28)], [0.5, 0.9])
    parts = detect_image(model, pixels, PredictSettings(score_threshold=0.1), 64)
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1, min_diameter_px=10), 64)
    assert len(parts) >= 2 and all(r.diameter_px == 8 for r in parts)
    assert len(rocks) == len(parts) and all(r.diameter_px == 30 for r in rocks)


def test_a_mask_models_completeness_limit_is_judged_by_the_catalogs_diameter():
    pixels = draw_rocks(64, 64, [(10, 10, 40, 40), (45, 5, 60, 20)])
    # Both boxes are 30 and 15 px across; the second rock's mask is a 6 x 6 px core (diameter 6.8 px).
    model = FixedMasks([(10, 10, 40, 40), (45, 5, 60, 20)], [0.9, 0.8], [(10, 10, 40, 40), (50, 10, 56, 16)])
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1, min_diameter_px=10), 64)
    assert [(r.rock_id, round(r.diameter_px, 1)) for r in rocks] == [(1, 33.9)]
