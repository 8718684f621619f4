"""`rockdet predict --tta flip`: each tile is also seen mirrored, and a rock found in both views is
one row at its views' mean score and box, while a box found in one view keeps half its score."""

from __future__ import annotations

import json

import pytest
import torch
from oracle import DarkBlobDetector, FixedBoxes, draw_rocks, oracle_info, save, use_model
from torch import nn

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


class TwoViews(nn.Module):
    """Gives ``as_is`` for a tile as it is and ``mirrored`` (in the mirrored tile's coordinates)
    for the mirrored tile, told apart by a dark marker pixel at the tile's top left."""

    def __init__(self, as_is: list[tuple], mirrored: list[tuple]):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.views = {True: as_is, False: mirrored}

    def forward(self, images):
        outputs = []
        for image in images:
            found = self.views[bool(image[:, 0, 0].mean() < 0.5)]
            outputs.append({"boxes": torch.tensor([box for box, _, _ in found], dtype=torch.float32).reshape(-1, 4),
                            "scores": torch.tensor([score for _, score, _ in found], dtype=torch.float32),
                            "labels": torch.tensor([label for _, _, label in found], dtype=torch.int64)})
        return outputs


def marked(pixels):
    pixels[0, 0] = 0
    return pixels


def mirror(box, width=64):
    x0, y0, x1, y1 = box
    return (width - x1, y0, width - x0, y1)


def test_the_best_partner_of_the_same_class_fuses_by_score_and_a_lone_neighbour_goes():
    rock = (10, 10, 30, 30)
    model = TwoViews([(rock, 0.9, 1)], [
        (mirror((12, 10, 32, 30)), 0.3, 1),  # a weaker partner: left to the NMS after fusing
        (mirror((10, 11, 30, 31)), 0.5, 1),  # the best partner of the rock's class
        (mirror((10, 10, 30, 30)), 0.8, 2),  # hardware on the same place: another class, not a partner
    ])
    plain = detect_image(model, marked(draw_rocks(64, 64, [rock])), PredictSettings(score_threshold=0.1), 64)
    assert rows_of(plain) == [(10, 10, 30, 30, 0.9)]
    rocks = detect_image(model, marked(draw_rocks(64, 64, [rock])),
                         PredictSettings(score_threshold=0.1, nested_threshold=None, tta="flip"), 64)
    # Score-weighted: y0 = (10 * 0.9 + 11 * 0.5) / 1.4; the score is the two views' mean.
    assert rows_of(rocks) == [(10, round(145 / 14, 3), 30, round(425 / 14, 3), 0.7)]


def test_boxes_scoring_0_fuse_alike_rather_than_vanish():
    model = TwoViews([((10, 10, 30, 30), 0.0, 1)], [(mirror((12, 10, 32, 30)), 0.0, 1)])
    rocks = detect_image(model, marked(draw_rocks(64, 64, [])), PredictSettings(score_threshold=0.0, tta="flip"), 64)
    assert rows_of(rocks) == [(11, 10, 31, 30, 0.0)]


def test_a_forward_pass_holds_as_many_images_with_the_flip():
    model = DarkBlobDetector()
    detect_image(model, draw_rocks(200, 200, [(5, 5, 20, 20)]),
                 PredictSettings(score_threshold=0.5, tile=64, tile_batch=4, tta="flip"), 64)
    assert max(model.calls) == 4 and sum(model.calls) == 2 * 16  # 16 tiles, each as it is and mirrored


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
