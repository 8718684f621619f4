"""`rockdet predict --tta flip`: each tile is also seen mirrored, and a rock found in both views is
one row at its views' mean score and box, while a box found in one view keeps half its score."""

from __future__ import annotations

import json

import pytest
from oracle import DarkBlobDetector, FixedBoxes, draw_rocks, oracle_info, save, use_model

from rockdet.cli.main import main
from rockdet.predict.detect import detect_image
from rockdet.predict.settings import PredictSettings


def rows_of(rocks):
    return [(round(r.x_min, 3), round(r.y_min, 3), round(r.x_max, 3), round(r.y_max, 3), round(r.score, 3))
            for r in rocks]


def test_rocks_both_views_find_keep_their_boxes_and_scores_at_twice_the_tiles():
    pixels = draw_rocks(64, 64, [(5, 8, 20, 22), (30, 35, 52, 50)])
    plain_model, flip_model = DarkBlobDetector(), DarkBlobDetector()
    plain = detect_image(plain_model, pixels, PredictSettings(score_threshold=0.5), 64)
    flipped = detect_image(flip_model, pixels, PredictSettings(score_threshold=0.5, tta="flip"), 64)
    assert rows_of(flipped) == rows_of(plain) == [(30, 35, 52, 50, 0.9), (5, 8, 20, 22, 0.9)]
    assert sum(flip_model.calls) == 2 * sum(plain_model.calls)


def test_a_box_one_view_finds_keeps_half_its_score():
    # The same tile coordinates in both views: mirrored back, the second view's box lies elsewhere.
    model = FixedBoxes([(4, 10, 20, 30), (22, 40, 42, 60)], [0.9, 0.8])  # the second one is centred
    pixels = draw_rocks(64, 64, [(4, 10, 20, 30)])
    kept = detect_image(model, pixels, PredictSettings(score_threshold=0.4, tta="flip", nested_threshold=None), 64)
    assert rows_of(kept) == [(22, 40, 42, 60, 0.8), (4, 10, 20, 30, 0.45), (44, 10, 60, 30, 0.45)]
    above_half = detect_image(model, pixels, PredictSettings(score_threshold=0.5, tta="flip"), 64)
    assert rows_of(above_half) == [(22, 40, 42, 60, 0.8)]


def test_the_two_views_boxes_of_one_rock_fuse_into_their_score_weighted_mean():
    # Mirrored back, (20, 10, 42, 30) becomes (22, 10, 44, 30): IoU 0.83, one rock.
    model = FixedBoxes([(20, 10, 42, 30)], [0.6])
    rocks = detect_image(model, draw_rocks(64, 64, [(20, 10, 43, 30)]), PredictSettings(score_threshold=0.5, tta="flip"), 64)
    assert rows_of(rocks) == [(21, 10, 43, 30, 0.6)]


def test_predict_with_flip_writes_the_same_rocks_and_masks_and_records_it(tmp_path, monkeypatch):
    pixels = draw_rocks(96, 80, [(5, 8, 20, 22), (40, 30, 70, 60), (75, 5, 90, 15)])
    save(pixels, tmp_path / "in" / "scene.png")
    use_model(monkeypatch, DarkBlobDetector(with_masks=True), oracle_info("maskrcnn_resnet18_fpn", input_size=64))
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"x")
    catalogs = {}
    for tta in ("none", "flip"):
        out = tmp_path / tta
        assert main(["predict", "--checkpoint", str(checkpoint), "--out", str(out), str(tmp_path / "in"),
                     "--tta", tta, "--camera", "none"]) == 0
        catalogs[tta] = json.loads((out / "catalogs" / "scene.png.json").read_text())
    plain, flipped = catalogs["none"], catalogs["flip"]
    assert flipped["rock_count"] == plain["rock_count"] == 3
    for mine, theirs in zip(flipped["rocks"], plain["rocks"]):
        assert mine["score"] == pytest.approx(theirs["score"])
        assert mine["x_min"] == theirs["x_min"] and mine["x_max"] == theirs["x_max"]
        assert mine["area_px"] == theirs["area_px"] and mine["major_axis_px"] == theirs["major_axis_px"] > 0
    assert flipped["tiling"]["tta"] == "flip" and "tta" not in plain["tiling"]


def test_an_unknown_tta_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["predict", "--checkpoint", "m.ckpt", "--out", str(tmp_path), "x.png", "--tta", "rotate"])
    assert "invalid choice: 'rotate'" in capsys.readouterr().err
