"""`rockdet evaluate` judges a catalog as a scientist would: box precision and recall at IoU 0.5
and 0.3 with COCO crowd regions honoured, mask precision and recall against dense rock masks,
nested duplicates, by size and by image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_coco
from oracle import FixedBoxes, save, use_model
from PIL import Image

import rockdet.models
from rockdet.cli.main import main
from rockdet.models.info import ModelInfo

ROCK_A, ROCK_B = (10, 10, 20, 20), (40, 10, 50, 20)
CROWD = (8, 42, 30, 58)  # one labelled blob over several rocks
DETECTIONS = [ROCK_A,               # on a rock: right at IoU 0.5
              (45, 10, 55, 20),     # half on rock B: IoU 0.33, right at 0.3 only; half its pixels rock
              (25, 25, 35, 35),     # bare ground: wrong
              (10, 45, 20, 55),     # inside the crowd region: neither right nor wrong for boxes
              (50, 40, 60, 50)]     # bare ground, below the operating point
SCORES = [0.9, 0.8, 0.7, 0.6, 0.05]


@pytest.fixture
def dense_split(tmp_path, monkeypatch):
    image = np.full((64, 64, 3), 150, np.uint8)
    save(image, tmp_path / "images" / "scene.png")
    mask = np.zeros((64, 64), np.uint8)
    for x0, y0, x1, y1 in (ROCK_A, ROCK_B, CROWD, (55, 55, 58, 58)):  # the last: a 9-px pebble
        mask[y0:y1, x0:x1] = 255
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "scene.png")
    boxes = [ROCK_A, ROCK_B, CROWD]
    coco = write_coco(tmp_path / "images" / "_annotations.coco.json",
                      [{"id": 1, "file_name": "scene.png", "width": 64, "height": 64}],
                      [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": int(box == CROWD),
                        "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]} for i, box in enumerate(boxes)])
    hparams = {"model": {"arch": "fasterrcnn_mobilenet_v3_large_fpn", "min_size": 64, "detections_per_image": 300},
               "input_size": 64, "evaluation": {"score_threshold": 0.5, "iou_threshold": 0.5}}
    model = FixedBoxes(DETECTIONS, SCORES)
    use_model(monkeypatch, model, ModelInfo.from_hparams(hparams, "test"))
    return coco


def evaluate(tmp_path, coco, *extra):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", "m.ckpt", "--data", str(coco), "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_box_and_mask_precision_and_recall_on_known_answers(tmp_path, dense_split):
    report = evaluate(tmp_path, dense_split)
    totals = report["quality"]["totals"]
    assert report["masks"].endswith("masks")  # found beside the COCO file's folder
    assert totals["rocks"] == 2 and totals["detections"] == 4  # the crowd blob is no rock to find
    assert totals["box_precision_50"] == pytest.approx(1 / 3)  # the crowd detection is not judged
    assert totals["box_recall_50"] == pytest.approx(1 / 2)
    assert totals["box_precision_30"] == pytest.approx(2 / 3)
    assert totals["box_recall_30"] == pytest.approx(1.0)
    assert totals["mask_precision"] == pytest.approx(3 / 4)  # all but the one on bare ground
    assert totals["mask_recall"] == pytest.approx(1.0)  # A, B and the blob; the pebble is too small
    (image,) = report["quality"]["by_image"]
    assert image["image"] == "scene.png" and image["detections"] == 4
    sizes = {row["size_px"]: row for row in report["quality"]["by_size"]}
    assert sizes["0-16"]["rocks"] == 2 and sizes["0-16"]["recall_50"] == pytest.approx(0.5)


def test_without_the_crowd_flag_the_blob_is_a_rock_to_find(tmp_path, dense_split):
    data = json.loads(dense_split.read_text())
    for annotation in data["annotations"]:
        annotation["iscrowd"] = 0
    dense_split.write_text(json.dumps(data))
    totals = evaluate(tmp_path, dense_split)["quality"]["totals"]
    assert totals["rocks"] == 3 and totals["box_precision_50"] == pytest.approx(1 / 4)


def test_an_explicit_mask_folder_and_the_operating_point(tmp_path, dense_split):
    totals = evaluate(tmp_path, dense_split, "--masks", str(tmp_path / "masks"),
                      "--score-threshold", "0.01")["quality"]["totals"]
    assert totals["detections"] == 5 and totals["mask_precision"] == pytest.approx(3 / 5)


def test_nested_detections_are_counted(tmp_path, dense_split, monkeypatch):
    # The catalog rule keeps one of two nested boxes; with the rule off both are counted.
    model = FixedBoxes([ROCK_A, (12, 12, 18, 18)], [0.9, 0.8])
    use_model(monkeypatch, model, rockdet.models.load_model("m")[1])
    totals = evaluate(tmp_path, dense_split)["quality"]["totals"]
    assert totals["detections"] == 1 and totals["nested_share"] == 0.0


def test_evaluate_never_writes_its_metrics_over_the_annotations(tmp_path, dense_split):
    before = dense_split.read_bytes()
    assert main(["evaluate", "--checkpoint", "m.ckpt", "--data", str(dense_split), "--out", str(dense_split)]) == 2
    assert dense_split.read_bytes() == before


def test_coco_map_and_the_operating_point_honour_crowd_regions(tmp_path, dense_split):
    import torch

    from rockdet.evaluation.metrics import DetectionMetrics

    # A confident detection on a crowd blob and a less confident one on the only rock: COCO
    # ignores the first, so the rock comes first and AP is 1 (0.5 if the blob counted as wrong).
    preds = [{"boxes": torch.tensor([[10.0, 45.0, 20.0, 55.0], [10.0, 10.0, 20.0, 20.0]]),
              "scores": torch.tensor([0.9, 0.8]), "labels": torch.ones(2, dtype=torch.int64)}]
    target = {"boxes": torch.tensor([[10.0, 10.0, 20.0, 20.0]]), "labels": torch.ones(1, dtype=torch.int64)}
    crowded = DetectionMetrics(0.5)
    crowded.update(preds, [{**target, "crowd_boxes": torch.tensor([[8.0, 42.0, 30.0, 58.0]])}])
    plain = DetectionMetrics(0.5)
    plain.update(preds, [target])
    assert crowded.compute().scalars["map_50"] == pytest.approx(1.0)
    assert plain.compute().scalars["map_50"] == pytest.approx(0.5, abs=0.01)
    # evaluate: at the operating point 0.5 three detections are judged, the one on the blob is not.
    assert evaluate(tmp_path, dense_split)["metrics"]["precision_at_score"] == pytest.approx(1 / 3)


def test_coco_map_over_every_iou_is_reported_at_the_models_cap():
    import torch

    from rockdet.evaluation.metrics import DetectionMetrics

    # One rock found with IoU 0.62: right at COCO's IoU thresholds 0.5, 0.55 and 0.6 and wrong at the 7
    # above, so COCO mAP is 0.3 (pycocotools' own summary gives -1 without 100 among its caps).
    metrics = DetectionMetrics(0.5, max_detections=300)
    metrics.update([{"boxes": torch.tensor([[0.0, 0.0, 10.0, 6.2]]), "scores": torch.tensor([0.9]),
                     "labels": torch.ones(1, dtype=torch.int64)}],
                   [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.ones(1, dtype=torch.int64)}])
    assert metrics.compute().scalars["map"] == pytest.approx(0.3, abs=0.01)


def test_evaluate_with_flip_judges_the_catalogs_predict_with_flip_writes(tmp_path, dense_split):
    import csv

    plain = evaluate(tmp_path, dense_split)["quality"]["by_image"][0]
    report = evaluate(tmp_path, dense_split, "--tta", "flip")
    assert report["evaluation"]["tta"] == "flip"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(tmp_path / "out"), "--tta", "flip",
                 str(tmp_path / "images" / "scene.png")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "catalogs" / "scene.png.csv")))
    flipped = report["quality"]["by_image"][0]
    assert flipped["detections"] == len(rows) != plain["detections"]
