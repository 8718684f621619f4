"""Hostile and careless annotation files: paths they name stay inside their root, and every bad
entry is one line naming the file and the entry. The cases are listed in the docstring of
tests/test_hostile_inputs.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import write_coco, write_image

from rockdet.data.formats import load_split
from rockdet.errors import DataError
from rockdet.training.config import SplitConfig


def coco_of(tmp_path, file_name, images=None, **split):
    """A COCO file in tmp_path/labels naming one image ``file_name``."""
    (tmp_path / "labels").mkdir(exist_ok=True)
    path = write_coco(tmp_path / "labels" / "ann.json", [{"id": 1, "file_name": file_name, "width": 64, "height": 48}],
                      [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]}])
    return SplitConfig(format="coco", annotations=path, images=images, **split)


def test_coco_file_names_that_leave_the_image_folder_are_refused(tmp_path):
    write_image(tmp_path / "secret.png")  # beside, not inside, the folder the split reads
    for file_name in ("/etc/passwd", "../secret.png", f"{tmp_path}/secret.png", "sub/../../secret.png"):
        with pytest.raises(DataError, match=r"ann.json: images\[0\] file_name .* leads outside the image folder"):
            load_split(coco_of(tmp_path, file_name), ["rock"])


def test_coco_absolute_file_names_of_the_labellers_machine_are_found_by_base_name_inside(tmp_path):
    write_image(tmp_path / "labels" / "frame1.png")
    loaded = load_split(coco_of(tmp_path, "/home/labeller/mars/frame1.png"), ["rock"])
    assert loaded.records[0].path == tmp_path / "labels" / "frame1.png"
    loaded = load_split(coco_of(tmp_path, "C:\\Users\\labeller\\frame1.png"), ["rock"])
    assert loaded.records[0].path.name == "frame1.png"
    write_image(tmp_path / "labels" / "sub" / "frame2.png")
    assert load_split(coco_of(tmp_path, "sub/./../sub/frame2.png"), ["rock"]).report.images == 1


def test_coco_images_elsewhere_are_read_with_the_images_folder_or_the_opt_in(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    with pytest.raises(DataError, match=r"set the split's `images` to the folder holding the images"):
        load_split(coco_of(tmp_path, "../images/a.png"), ["rock"])
    assert load_split(coco_of(tmp_path, "../images/a.png", images=tmp_path / "images"), ["rock"]).report.images == 1
    split = coco_of(tmp_path, "../images/a.png", allow_paths_outside=True)
    assert load_split(split, ["rock"]).records[0].path.resolve() == (tmp_path / "images" / "a.png").resolve()


def test_a_symlink_inside_the_image_folder_is_the_users_own_set_up(tmp_path):
    write_image(tmp_path / "store" / "a.png")  # e.g. a DVC cache or a shared image store
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.png").symlink_to(tmp_path / "store" / "a.png")
    assert load_split(coco_of(tmp_path, "a.png"), ["rock"]).report.images == 1


def yolo(tmp_path, spec: str, split="val"):
    (tmp_path / "data.yaml").write_text(spec)
    return SplitConfig(format="yolo", annotations=tmp_path / "data.yaml", split=split)


def test_yolo_entries_and_list_lines_that_leave_the_dataset_root_are_refused(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "images" / "val" / "a.png")
    write_image(tmp_path / "elsewhere" / "b.png")
    with pytest.raises(DataError, match=r"data.yaml: split 'val' entry '/etc' leads outside the dataset root"):
        load_split(yolo(root, "names: [rock]\nval: /etc\n"), ["rock"])
    (root / "val.txt").write_text(f"images/val/a.png\n{tmp_path}/elsewhere/b.png\n")
    with pytest.raises(DataError, match=r"val.txt:2: image '.*elsewhere/b.png' leads outside the dataset root"):
        load_split(yolo(root, "names: [rock]\nval: val.txt\n"), ["rock"])
    (root / "val.txt").write_text("../elsewhere/b.png\n")
    with pytest.raises(DataError, match=r"val.txt:1: image '../elsewhere/b.png' leads outside"):
        load_split(yolo(root, "names: [rock]\nval: val.txt\n"), ["rock"])


def test_yolo_absolute_root_with_absolute_entries_under_it_and_roboflow_parent_paths(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "images" / "val" / "a.png")
    write_image(root / "valid" / "images" / "b.png")
    (root / "val.txt").write_text(f"{root}/images/val/a.png\n")
    assert load_split(yolo(root, f"path: {root}\nnames: [rock]\nval: {root}/val.txt\n"), ["rock"]).report.images == 1
    # Roboflow writes '../valid/images' for the folder beside the YAML; Ultralytics reads it so.
    assert load_split(yolo(root, "names: [rock]\nval: ../valid/images\n"), ["rock"]).report.images == 1


def test_yolo_opt_in_reads_outside_the_root(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    write_image(tmp_path / "elsewhere" / "images" / "b.png")
    split = yolo(root, f"names: [rock]\nval: {tmp_path}/elsewhere/images\n")
    with pytest.raises(DataError, match=r"leads outside the dataset root"):
        load_split(split, ["rock"])
    opted = SplitConfig(format="yolo", annotations=split.annotations, split="val", allow_paths_outside=True)
    assert load_split(opted, ["rock"]).report.images == 1


@pytest.mark.parametrize(("label", "message"), [
    ("nan 0.5 0.5 0.1 0.1\n", r"a.txt:1: class 'nan' is not an integer"),
    ("0.5 0.5 0.5 0.1 0.1\n", r"a.txt:1: class '0.5' is not an integer"),
    ("0 0.5 0.5 0.1\n", r"a.txt:1: expected 'class cx cy w h'"),
    ("7 0.5 0.5 0.1 0.1\n", r"a.txt:1: class 7 is not in the data YAML names"),
])
def test_yolo_bad_label_lines_are_one_line(tmp_path, label, message):
    write_image(tmp_path / "images" / "val" / "a.png")
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val" / "a.txt").write_text(label)
    with pytest.raises(DataError, match=message):
        load_split(yolo(tmp_path, "names: [rock]\nval: images/val\n"), ["rock"])


def test_yolo_nan_coordinates_are_dropped_and_counted(tmp_path):
    write_image(tmp_path / "images" / "val" / "a.png")
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val" / "a.txt").write_text("0 nan 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1\n")
    loaded = load_split(yolo(tmp_path, "names: [rock]\nval: images/val\n"), ["rock"])
    assert loaded.report.rocks == 1 and loaded.report.dropped["outside image"] == 1


@pytest.mark.parametrize(("spec", "message"), [
    ("", r"not a YOLO data YAML \(no 'names'\)"),
    ("names: {a: rock}\nval: images\n", r"'names' must be a list or a mapping of class ids"),
    ("names: [rock]\nval:\n", r"split 'val' must name image folders or .txt lists, got None"),
    ("names: [rock]\nval: [images, 3]\n", r"split 'val' must name image folders or .txt lists"),
    ("path: [a, b]\nnames: [rock]\nval: images\n", r"'path' must be a folder name"),
])
def test_yolo_malformed_data_yamls_are_one_line(tmp_path, spec, message):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=message):
        load_split(yolo(tmp_path, spec), ["rock"])


def test_yolo_files_that_are_not_text_are_one_line(tmp_path):
    write_image(tmp_path / "images" / "val" / "a.png")
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val" / "a.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xff")
    with pytest.raises(DataError, match=r"a.txt: not UTF-8 text"):
        load_split(yolo(tmp_path, "names: [rock]\nval: images/val\n"), ["rock"])
    (tmp_path / "data.yaml").write_bytes(b"names: [\xff]\n")
    with pytest.raises(DataError, match=r"data.yaml: not UTF-8 text"):
        load_split(SplitConfig(format="yolo", annotations=tmp_path / "data.yaml", split="val"), ["rock"])


def test_yolo_quoted_class_ids_read_as_ultralytics_reads_them(tmp_path):
    write_image(tmp_path / "images" / "val" / "a.png")
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val" / "a.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    assert load_split(yolo(tmp_path, "names: {'0': crater, '1': rock}\nval: images/val\n"), ["rock"]).report.rocks == 1


def test_a_mask_folder_that_is_the_image_folder_is_refused(tmp_path):
    write_image(tmp_path / "ds" / "a.png", 40, 30)
    with pytest.raises(DataError, match=r"ds: the mask folder is the image folder"):
        load_split(SplitConfig(format="masks", images=tmp_path / "ds", masks=tmp_path / "ds"), ["rock"])


def test_masks_inside_the_image_folder_are_not_images_and_folders_named_like_images_are_skipped(tmp_path):
    write_image(tmp_path / "ds" / "a.png", 40, 30)
    (tmp_path / "ds" / "sol2.png").mkdir()
    ids = np.zeros((30, 40), np.uint8)
    ids[2:6, 3:9] = 1
    (tmp_path / "ds" / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "ds" / "masks" / "a.png"), ids)
    loaded = load_split(SplitConfig(format="masks", images=tmp_path / "ds", masks=tmp_path / "ds" / "masks"), ["rock"])
    assert [r.path.name for r in loaded.records] == ["a.png"] and loaded.report.rocks == 1
