"""predict → COCO pre-annotations → (a labelling tool) → training reader: the same boxes come back."""

import json

import numpy as np
from oracle import draw_rocks, save

from rockdet.cli.main import main
from rockdet.data.formats import load_split
from rockdet.training.config import SplitConfig


def predict_with_coco(tmp_path, oracle):
    images = tmp_path / "images"
    save(draw_rocks(96, 64, [(10, 10, 20, 22), (50, 30, 70, 44)]), images / "a.png")
    save(draw_rocks(96, 64, [(30, 5, 41, 15)]), images / "sol2" / "b.png")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(images), "--format", "csv,json,coco"]) == 0
    return images, out, json.loads((out / "predictions.coco.json").read_text())


def catalog_boxes(out, key):
    rocks = json.loads((out / "catalogs" / f"{key}.json").read_text())["rocks"]
    return sorted((r["x_min"], r["y_min"], r["x_max"], r["y_max"]) for r in rocks)


def test_predictions_as_coco_read_back_by_training_give_the_same_boxes(tmp_path, oracle):
    images, out, coco = predict_with_coco(tmp_path, oracle)
    assert [i["file_name"] for i in coco["images"]] == ["a.png", "sol2/b.png"]
    assert coco["categories"] == [{"id": 1, "name": "rock", "supercategory": "terrain"}]
    assert all(a["score"] == 0.9 and a["iscrowd"] == 0 for a in coco["annotations"])
    loaded = load_split(SplitConfig(annotations=out / "predictions.coco.json", images=images), ["rock"])
    for record, key in zip(loaded.records, ("a.png", "sol2/b.png")):
        back = sorted(tuple(float(v) for v in box) for box in record.boxes)
        assert np.allclose(back, catalog_boxes(out, key))
    assert loaded.report.rocks == 3 and not loaded.report.problems


def test_label_studio_and_cvat_exports_are_read(tmp_path, oracle):
    images, out, coco = predict_with_coco(tmp_path, oracle)
    (images / "sol2" / "b.png").rename(images / "b.png")  # a labelling task holds the images in one folder
    # Label Studio: categories from 0, files renamed "<hash>-<name>" under an images/ folder;
    # a reviewer deleted one box and added another.
    studio = json.loads(json.dumps(coco))
    studio["categories"] = [{"id": 0, "name": "rock"}]
    for image in studio["images"]:
        image["file_name"] = f"images/0a1b2c3d-{image['file_name'].split('/')[-1]}"
    for annotation in studio["annotations"]:
        annotation["category_id"] = 0
        del annotation["score"]
    studio["annotations"] = studio["annotations"][1:] + [
        {"id": 99, "image_id": 2, "category_id": 0, "bbox": [60, 40, 10, 10], "area": 100, "iscrowd": 0}]
    (tmp_path / "studio.json").write_text(json.dumps(studio))
    loaded = load_split(SplitConfig(annotations=tmp_path / "studio.json", images=images), ["rock"])
    assert [r.path.name for r in loaded.records] == ["a.png", "b.png"]
    assert [len(r.boxes) for r in loaded.records] == [1, 2] and loaded.records[1].boxes[-1].tolist() == [60, 40, 70, 50]
    # CVAT: segmentation lists and per-annotation attributes, images as uploaded (base names).
    cvat = json.loads(json.dumps(coco))
    for annotation in cvat["annotations"]:
        annotation["attributes"] = {"occluded": False}
        x, y, w, h = annotation["bbox"]
        annotation["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    cvat["images"][1]["file_name"] = "b.png"
    (tmp_path / "cvat.json").write_text(json.dumps(cvat))
    loaded = load_split(SplitConfig(annotations=tmp_path / "cvat.json", images=images), ["rock"])
    assert loaded.report.rocks == 3 and [r.path.name for r in loaded.records] == ["a.png", "b.png"]
