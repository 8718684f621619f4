"""Annotation readers: COCO, YOLO and mask folders into one target format."""

import json
import re

import cv2
import numpy as np
import pytest
from conftest import CONFIGS, SHARED_DATA, tiny_train_overrides, write_coco, write_image

from rockdet.cli.main import main
from rockdet.data.dataset import RockDataset
from rockdet.data.formats import load_split
from rockdet.errors import DataError
from rockdet.training.config import SplitConfig


def coco_split(path, images=None):
    return SplitConfig(format="coco", annotations=path, images=images)


def test_coco_keeps_rock_classes_clips_and_drops_bad_boxes(tmp_path):
    write_image(tmp_path / "a.png", 64, 48)
    write_image(tmp_path / "empty.png", 64, 48)
    square = [10, 10, 20, 10, 20, 20, 10, 20]
    path = write_coco(tmp_path / "ann.json", [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "empty.png", "width": 64, "height": 48}], [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10], "segmentation": [square]},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 40, 10, 10], "segmentation": [square]},
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 4]},
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [100, 5, 4, 4]}])
    loaded = load_split(coco_split(path), ["rock", "boulder"])
    first, empty = loaded.records
    np.testing.assert_allclose(first.boxes, [[10, 10, 20, 20], [60, 40, 64, 48]])
    assert first.labels.tolist() == [1, 1]
    assert first.instance_masks().shape == (2, 48, 64)
    assert first.instance_masks()[0].sum() == pytest.approx(100, abs=25)
    assert len(empty.boxes) == 0 and empty.boxes.shape == (0, 4)
    report = loaded.report
    assert report.clipped_boxes == 1
    assert report.dropped == {"zero area": 1, "outside image": 1}
    assert report.ignored_categories == {"crater": 1}
    assert (report.images, report.rocks, report.empty_images) == (2, 2, 1)


def test_coco_errors_name_the_file(tmp_path):
    write_image(tmp_path / "a.png")
    missing = write_coco(tmp_path / "missing.json",
                         [{"id": 1, "file_name": "nope.png", "width": 64, "height": 48}], [])
    with pytest.raises(DataError, match=r"missing.json: image file not found: .*nope.png"):
        load_split(coco_split(missing), ["rock"])
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(DataError, match=r"broken.json: not valid JSON"):
        load_split(coco_split(broken), ["rock"])
    bad_bbox = write_coco(tmp_path / "bbox.json", [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
                          [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2]}])
    with pytest.raises(DataError, match=r"bbox.json: annotation 1 has a malformed bbox"):
        load_split(coco_split(bad_bbox), ["rock"])
    with pytest.raises(DataError, match=r"none of rock_classes \['stone'\] is a category"):
        load_split(coco_split(bad_bbox), ["stone"])
    with pytest.raises(DataError, match=r"absent.json: annotation file not found"):
        load_split(coco_split(tmp_path / "absent.json"), ["rock"])


def write_yolo(tmp_path, labels: dict[str, str], names="[rock, crater]"):
    for stem, text in labels.items():
        write_image(tmp_path / "images" / "val" / f"{stem}.png", 100, 50)
        if text is not None:
            (tmp_path / "labels" / "val").mkdir(parents=True, exist_ok=True)
            (tmp_path / "labels" / "val" / f"{stem}.txt").write_text(text)
    spec = tmp_path / "data.yaml"
    spec.write_text(f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n")
    return SplitConfig(format="yolo", annotations=spec, split="val")


def test_yolo_detect_and_segment_labels(tmp_path):
    split = write_yolo(tmp_path, {
        "a": "0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1\n",
        "b": "0 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6\n",
        "c": None})
    loaded = load_split(split, ["rock"])
    a, b, c = loaded.records
    np.testing.assert_allclose(a.boxes, [[40, 15, 60, 35]], atol=1e-4)
    assert a.instance_masks() is None
    np.testing.assert_allclose(b.boxes, [[10, 10, 30, 30]], atol=1e-4)
    assert b.instance_masks().shape == (1, 50, 100) and b.instance_masks().sum() > 300
    assert c.boxes.shape == (0, 4)
    assert loaded.report.ignored_categories == {"crater": 1}


def test_yolo_names_mapping_and_errors(tmp_path):
    split = write_yolo(tmp_path, {"a": "3 0.5 0.5 0.2 0.2\n"}, names="{3: boulder}")
    assert len(load_split(split, ["rock", "boulder"]).records[0].boxes) == 1
    (tmp_path / "labels" / "val" / "a.txt").write_text("0 0.5 0.5\n")
    with pytest.raises(DataError, match=r"a.txt:1: expected 'class cx cy w h'"):
        load_split(write_yolo(tmp_path, {"a": "0 0.5 0.5\n"}, names="[rock]"), ["rock"])
    with pytest.raises(DataError, match=r"a.txt:1: class 5 is not in the data YAML names"):
        load_split(write_yolo(tmp_path, {"a": "5 0.5 0.5 0.1 0.1\n"}, names="[rock]"), ["rock"])
    with pytest.raises(DataError, match=r"no 'test' split"):
        load_split(SplitConfig(format="yolo", annotations=tmp_path / "data.yaml", split="test"), ["rock"])


def test_instance_and_binary_mask_folders(tmp_path):
    write_image(tmp_path / "images" / "a.png", 40, 30)
    ids = np.zeros((30, 40), dtype=np.uint16)
    ids[2:6, 3:9] = 7
    ids[10:20, 10:12] = 300  # 16-bit ids are allowed
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), ids)
    instance = load_split(SplitConfig(format="masks", images=tmp_path / "images",
                                      masks=tmp_path / "masks"), ["rock"])
    np.testing.assert_allclose(instance.records[0].boxes, [[3, 2, 9, 6], [10, 10, 12, 20]])
    assert instance.records[0].instance_masks().sum() == 24 + 20

    binary = np.zeros((30, 40), dtype=np.uint8)
    binary[2:6, 3:9] = 255
    binary[20:25, 30:35] = 255
    binary[25:27, 35:37] = 255  # touches the previous blob diagonally: same rock
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), binary)
    loaded = load_split(SplitConfig(format="masks", images=tmp_path / "images", masks=tmp_path / "masks",
                                    mask_mode="binary"), ["rock"])
    np.testing.assert_allclose(loaded.records[0].boxes, [[3, 2, 9, 6], [30, 20, 37, 27]])


def test_mask_folder_errors(tmp_path):
    write_image(tmp_path / "images" / "a.png", 40, 30)
    (tmp_path / "masks").mkdir()
    split = SplitConfig(format="masks", images=tmp_path / "images", masks=tmp_path / "masks")
    with pytest.raises(DataError, match=r"a.png: mask file not found"):
        load_split(split, ["rock"])
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match=r"mask is 10x10 but image is 40x30"):
        load_split(split, ["rock"])


def coco_boxes_beside_dense_masks(tmp_path):
    """A Mars-like COCO file of boxes only, with a dense 0/255 rock mask per image beside it."""
    write_image(tmp_path / "images" / "a.png", 40, 30)
    write_image(tmp_path / "images" / "b.png", 40, 30)
    rock = np.zeros((30, 40), dtype=np.uint8)
    rock[4:10, 5:11] = 255          # a rock, boxed with some ground around it
    rock[12:16, 20:24] = 255        # a second rock, whose box also holds a corner of the third
    rock[16:20, 24:30] = 255
    rock[24:30, 33:40] = 255        # a rock at the image's corner, boxed with fractional edges
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), rock)
    path = write_coco(tmp_path / "images" / "ann.json", [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "b.png", "width": 40, "height": 30}], [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [3, 2, 10, 10]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 12, 6, 6]},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [32.6, 23.4, 7.4, 6.6]},
        {"id": 4, "image_id": 1, "category_id": 3, "bbox": [30, 2, 6, 4]},   # hardware, on no rock
        {"id": 5, "image_id": 2, "category_id": 1, "bbox": [3, 2, 10, 10]}])
    return path, rock > 127


def test_coco_boxes_without_segmentation_take_their_instance_masks_from_dense_rock_masks(tmp_path):
    path, rock = coco_boxes_beside_dense_masks(tmp_path)
    loaded = load_split(SplitConfig(format="coco", annotations=path, masks=tmp_path / "masks"), ["rock"],
                        hardware_classes=["crater"])
    masks = loaded.records[0].instance_masks()
    assert masks.shape == (4, 30, 40) and masks.dtype == np.uint8
    expected = np.zeros((4, 30, 40), dtype=bool)
    expected[0, 2:12, 3:13] = rock[2:12, 3:13]
    expected[1, 12:18, 20:26] = rock[12:18, 20:26]
    expected[2, 23:30, 33:40] = rock[23:30, 33:40]  # the pixels whose centres lie in 32.6..40 x 23.4..30
    expected[3, 2:6, 30:36] = True                   # hardware: its whole box
    np.testing.assert_array_equal(masks.astype(bool), expected)
    assert masks[0].sum() == 36 and masks[1].sum() == 16 + 4 and masks[2].sum() == 42 and masks[3].sum() == 24
    # A dense validation source finds the folder beside its file, as for the operating point.
    dense = load_split(SplitConfig(format="coco", annotations=path, dense=True), ["rock"],
                       hardware_classes=["crater"])
    np.testing.assert_array_equal(dense.records[0].instance_masks(), masks)
    dataset = RockDataset(loaded.records[:1], None, with_masks=True)
    _, target = dataset[0]
    assert target["masks"].shape == (4, 30, 40) and int(target["masks"].sum()) == 36 + 20 + 42 + 24
    # b.png has no mask in the folder, so no instance masks.
    assert loaded.records[1].instance_masks() is None


def test_a_mask_architecture_refuses_boxes_without_masks_naming_the_image(tmp_path):
    path, _ = coco_boxes_beside_dense_masks(tmp_path)
    loaded = load_split(SplitConfig(format="coco", annotations=path), ["rock"])
    assert loaded.records[0].instance_masks() is None
    assert len(RockDataset(loaded.records, None, with_masks=False)[0][1]["boxes"]) == 3
    with pytest.raises(DataError, match=r"a.png: a mask architecture needs instance masks.*`masks` folder"):
        RockDataset(loaded.records, None, with_masks=True)[0]


def test_training_a_mask_arch_stops_before_its_first_step_at_an_image_without_masks(tmp_path, capsys):
    path, _ = coco_boxes_beside_dense_masks(tmp_path)
    overrides = tiny_train_overrides({"train": path, "val": path}, tmp_path / "run", **{
        "model.arch": "maskrcnn_resnet18_fpn", "model.fpn_channels": 32, "model.anchor_sizes": "auto",
        "data.train.masks": tmp_path / "masks",
        "data.batch_size": 2, "trainer.max_steps": 1})
    assert main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"), *overrides]) != 0
    printed = capsys.readouterr()
    assert "b.png: a mask architecture needs instance masks" in printed.out + printed.err
    assert "(1 such image(s))" in printed.out + printed.err and "Traceback" not in printed.out + printed.err
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    # With b.png's dense mask beside a.png's, the same run trains (validation needs no masks).
    cv2.imwrite(str(tmp_path / "masks" / "b.png"), np.zeros((30, 40), np.uint8))
    assert main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"), *overrides]) == 0
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_data_report_prints_counts_histogram_and_problems(tmp_path, capsys):
    write_image(tmp_path / "a.png", 64, 48)
    path = write_coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}], [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3]},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [70, 1, 3, 3]}])
    assert main(["data-report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "images: 1 (0 without rocks)" in out and "rocks: 2" in out
    assert re.search(r"^\s+0-4\s+1 ", out, re.M) and re.search(r"^\s+8-16\s+1 ", out, re.M)
    assert re.search(r"^\s+4-8\s+0", out, re.M)
    assert "boxes dropped: outside image: 1" in out
    assert "a.png: dropped 1 box(es), outside image" in out
    assert main(["data-report", str(tmp_path / "nothing.txt")]) == 2
    assert "cannot tell the annotation format" in capsys.readouterr().err


def test_synthetic_coco_round_trips(synthetic_data):
    loaded = load_split(coco_split(synthetic_data["train"]), ["rock"])
    info = json.loads(synthetic_data["train"].read_text())
    assert loaded.report.images == 6 and loaded.report.rocks == len(info["annotations"]) > 6
    record = loaded.records[0]
    masks = record.instance_masks()
    # Boxes from the polygons match the stored boxes to the pixel.
    for mask, box in zip(masks, record.boxes):
        ys, xs = np.nonzero(mask)
        assert abs(xs.min() - box[0]) <= 1 and abs(xs.max() + 1 - box[2]) <= 1


LUNAR = SHARED_DATA / "lunar-scene-analysis"


@pytest.mark.skipif(not LUNAR.is_dir(), reason="shared data ../shared/data/lunar-scene-analysis is absent")
def test_reads_the_real_lunar_roboflow_export():
    loaded = load_split(coco_split(LUNAR / "valid" / "_annotations.coco.json"), ["rock", "boulder"])
    # shared/data/README.md: valid has 99 images, 176 rock + 5 boulder instances
    assert loaded.report.images == 99 and loaded.report.rocks == 181
    assert loaded.report.ignored_categories["crater"] > 0
    with_masks = next(r for r in loaded.records if len(r.boxes))
    assert with_masks.instance_masks().shape == (len(with_masks.boxes), 432, 432)
