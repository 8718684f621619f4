"""Hostile or careless archive products (issue 19): each case fails alone, with one reason, or
is decoded and left unsized with the reason; the other images of the batch are catalogued.

Products read only themselves (refused before pdr opens any data):
- PDS3 ``^IMAGE = "../../../../etc/passwd"`` in a detached label;
- PDS3 ``^IMAGE = ("/etc/passwd", 1)``;
- PDS4 ``<file_name>../x.IMG</file_name>`` (and an absolute one).
One malformed label fails only its image:
- ``LINES = "abc"``; PDS4 ``<elements>lots</elements>``; PDS4 ``<offset>zero</offset>``;
- ``SAMPLE_BITS = 7`` (packed samples would decode as garbage): refused;
- a 3-element rover quaternion, and a pose without ORIGIN_OFFSET_VECTOR: decoded and sized, no
  site coordinates, the reason in the notes.
Camera models and poses are checked for sense before use:
- CAHV with H = V = 0 (was: ok rocks at 0-8 m), H and V scaled by 1e12 (was: ok rocks of
  diameter 0.0), A not a unit vector, H parallel to V: ``no_camera_model`` with the reason;
- a zero quaternion (was: ok rocks with NaN site coordinates): no site coordinates, with the reason;
- a camera below its ground plane: unsized, with the reason;
- a rock is ``ok`` only with a finite, positive range and diameter.
"""

import json
import math
import re

import numpy as np
import pytest
from change4_products import lcam_name, write_change4
from pds_products import (
    NAVCAM_ROVER_POSE,
    camera_group,
    navcam_for,
    rover_group,
    terrain_values,
    write_detached_label,
    write_pds3,
)

from rockdet.catalog.rock import Rock
from rockdet.cli.main import main
from rockdet.errors import ImageReadError
from rockdet.geometry.ground import GroundView
from rockdet.geometry.rover_ground import GroundPlane
from rockdet.geometry.sizing import ImageFrame, LabelSizer, size_rocks_on_ground
from rockdet.io.images import read_image

ROCKS = [(20, 40, 30, 50)]
SIDE = 64


def product(path, components=None, pose=NAVCAM_ROVER_POSE, **kwargs):
    groups = camera_group("CAHV", components or navcam_for(SIDE))
    if pose is not None:
        groups += "\n" + rover_group(**pose)
    return write_pds3(path, terrain_values(SIDE, SIDE, ROCKS), groups, **kwargs)


@pytest.fixture
def no_data_reads(monkeypatch):
    """pdr must not load any data object of a refused product."""
    import pdr

    def refuse(self, name):
        raise AssertionError(f"pdr read {name} of {self.filename}")

    monkeypatch.setattr(pdr.Data, "__getitem__", refuse)


@pytest.mark.parametrize("pointer", ['"../../../../etc/passwd"', '("/etc/passwd", 1)', '"..\\\\secret.IMG"'])
def test_pds3_pointers_outside_the_label_folder_are_refused(tmp_path, pointer, no_data_reads):
    data = write_pds3(tmp_path / "a.IMG", terrain_values(SIDE, 48, ROCKS))
    write_detached_label(data, tmp_path / "a.LBL", pointer=pointer)
    for path in (data, tmp_path / "a.LBL"):
        with pytest.raises(ImageReadError, match=r"\^IMAGE names .* outside the label's folder: refused"):
            read_image(path)


@pytest.mark.parametrize("name", ["../x.2B", "/etc/passwd"])
def test_pds4_file_names_outside_the_label_folder_are_refused(tmp_path, name, no_data_reads):
    data = write_change4(tmp_path, lcam_name(), np.full((48, 64), 9, np.uint8), ("Line", "Sample"), "UnsignedByte",
                         "LCAM", edits={f"<file_name>{lcam_name()}<": f"<file_name>{name}<"})
    with pytest.raises(ImageReadError, match="file_name names .* outside the label's folder: refused"):
        read_image(data)


@pytest.mark.parametrize("edit, reason", [
    ({"<elements>48<": "<elements>lots<"}, "axis Line elements 'lots' is not a whole number"),
    ({'<offset unit="byte">0<': '<offset unit="byte">zero<'}, "Array_2D_Image offset 'zero' is not a whole number"),
    ({"<data_type>UnsignedByte<": "<data_type>Complex<"}, "data_type 'Complex' is not one rockdet reads"),
])
def test_malformed_pds4_arrays_fail_with_one_reason(tmp_path, edit, reason):
    data = write_change4(tmp_path, lcam_name(), np.full((48, 64), 9, np.uint8), ("Line", "Sample"), "UnsignedByte",
                         "LCAM", edits=edit)
    with pytest.raises(ImageReadError, match=reason):
        read_image(data)


@pytest.mark.parametrize("edits, reason", [
    ({"LINES": '"abc"'}, "LINES = 'abc' is not a positive whole number"),
    ({"LINE_SAMPLES": "0"}, "LINE_SAMPLES = 0 is not a positive whole number"),
    ({"SAMPLE_BITS": "7"}, "SAMPLE_BITS = 7 with SAMPLE_TYPE MSB_INTEGER: rockdet reads 8, 16, 32, 64-bit samples"),
    ({"BAND_STORAGE_TYPE": "BAND_WOVEN", "BANDS": "3"}, "BAND_STORAGE_TYPE BAND_WOVEN is not one of"),
])
def test_malformed_pds3_images_fail_with_one_reason(tmp_path, edits, reason):
    path = write_pds3(tmp_path / "bad.IMG", terrain_values(SIDE, 48, ROCKS), edits=edits)
    with pytest.raises(ImageReadError, match=reason):
        read_image(path)


def cahv_scaled(scale_h: float, scale_v: float) -> list:
    c, a, h, v = navcam_for(SIDE)
    return [c, a, tuple(scale_h * x for x in h), tuple(scale_v * x for x in v)]


@pytest.mark.parametrize("components, reason", [
    (cahv_scaled(0.0, 0.0), "H gives a focal length |A x H| of 0 pixels"),
    (cahv_scaled(1e12, 1e12), "H gives a focal length |A x H| of 7.5e\\+14 pixels"),
    ([navcam_for(SIDE)[0], (1.0, 1.0, 1.0), *navcam_for(SIDE)[2:]], "A is not a unit vector"),
    ([*navcam_for(SIDE)[:3], navcam_for(SIDE)[2]], "H and V are \\(nearly\\) parallel"),
])
def test_senseless_camera_models_leave_the_image_unsized(tmp_path, components, reason):
    image = read_image(product(tmp_path / "m.IMG", components))
    assert image.geometry is None and re.search(reason, image.geometry_problem)
    rock = Rock(1, 0.9, *map(float, ROCKS[0]))
    sized = LabelSizer()([rock], ImageFrame.of(image))
    (rock,), note = sized.rocks, sized.record["geometry_note"]
    assert rock.size_flag == "no_camera_model" and rock.range_m is None and "CAHV camera model" in note


@pytest.mark.parametrize("pose, reason", [
    ({"offset": (1.0, 2.0, 0.0), "quaternion": (0.0, 0.0, 0.0, 0.0)}, "is zero: it gives no rotation"),
    ({"offset": (1.0, 2.0, 0.0), "quaternion": (1.0, 0.0, 0.0)}, "is not four finite numbers"),
])
def test_unusable_poses_cost_only_the_site_coordinates(tmp_path, pose, reason):
    image = read_image(product(tmp_path / "p.IMG", pose=pose))
    assert image.geometry is not None and image.geometry.site_rotation is None
    rock = Rock(1, 0.9, *map(float, ROCKS[0]))
    sized = LabelSizer()([rock], ImageFrame.of(image))
    (rock,), note = sized.rocks, sized.record["geometry_note"]
    assert rock.size_flag == "ok" and rock.site_x_m is None and math.isfinite(rock.range_m)
    assert "no site coordinates: ROVER_COORDINATE_SYSTEM: ORIGIN_ROTATION_QUATERNION" in note
    assert reason in note


def test_a_pose_without_its_offset_costs_only_the_site_coordinates(tmp_path):
    groups = camera_group("CAHV", navcam_for(SIDE)) + "\n" + "\n".join(
        line for line in rover_group(**NAVCAM_ROVER_POSE).splitlines() if "ORIGIN_OFFSET_VECTOR" not in line)
    image = read_image(write_pds3(tmp_path / "o.IMG", terrain_values(SIDE, SIDE, ROCKS), groups))
    rock = Rock(1, 0.9, *map(float, ROCKS[0]))
    sized = LabelSizer()([rock], ImageFrame.of(image))
    (rock,), note = sized.rocks, sized.record["geometry_note"]
    assert rock.size_flag == "ok" and rock.site_x_m is None
    assert "no site coordinates: ROVER_COORDINATE_SYSTEM has no ORIGIN_OFFSET_VECTOR" in note


def test_a_camera_below_its_ground_is_not_sized(tmp_path):
    image = read_image(product(tmp_path / "g.IMG"))  # the Navcam is 1.8 m above z = 0 (z down)
    rock = Rock(1, 0.9, *map(float, ROCKS[0]))
    sized = LabelSizer(ground_z=-5.0)([rock], ImageFrame.of(image))  # a ground 5 m above the origin
    (rock,), note = sized.rocks, sized.record["geometry_note"]
    assert rock.size_flag == "no_camera_model" and "the camera is not above the ground plane" in note


def test_rocks_are_ok_only_with_finite_positive_sizes(tmp_path):
    image = read_image(product(tmp_path / "f.IMG"))
    view = GroundView(image.geometry, GroundPlane.level(0.0, "test"))
    rock = Rock(1, 0.9, 30.0, 40.0, 30.0, 50.0)  # a box of zero width: no diameter to measure
    (rock,) = size_rocks_on_ground(view, [rock])
    assert rock.size_flag == "unmeasurable" and rock.diameter_m is None and rock.range_m is None


def test_a_batch_of_hostile_products_catalogues_the_good_ones(tmp_path, oracle):
    inputs = tmp_path / "in"
    product(inputs / "good.IMG")
    product(inputs / "zero_hv.IMG", cahv_scaled(0.0, 0.0))
    product(inputs / "huge_hv.IMG", cahv_scaled(1e12, 1e12))
    product(inputs / "zero_quaternion.IMG", pose={"offset": (1.0, 2.0, 0.0), "quaternion": (0.0, 0.0, 0.0, 0.0)})
    product(inputs / "three_quaternion.IMG", pose={"offset": (1.0, 2.0, 0.0), "quaternion": (1.0, 0.0, 0.0)})
    write_pds3(inputs / "abc.IMG", terrain_values(SIDE, SIDE, ROCKS), edits={"LINES": '"abc"'})
    write_pds3(inputs / "bits.IMG", terrain_values(SIDE, SIDE, ROCKS), edits={"SAMPLE_BITS": "7"})
    write_pds3(tmp_path / "elsewhere" / "outside.IMG", terrain_values(SIDE, SIDE, ROCKS))
    write_pds3(inputs / "escape.IMG", terrain_values(SIDE, SIDE, ROCKS), pointer='("../elsewhere/outside.IMG", 2)')
    write_change4(inputs, lcam_name(), np.full((48, 64), 9, np.uint8), ("Line", "Sample"), "UnsignedByte", "LCAM",
                  edits={"<elements>48<": "<elements>lots<"})
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs), "--overlay"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    reasons = {f["image"]: f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"abc.IMG", "bits.IMG", "escape.IMG", lcam_name()}
    assert "outside the label's folder" in reasons["escape.IMG"] and "elements 'lots'" in reasons[lcam_name()]
    assert not [p for p in out.rglob("*escape*") if p.suffix in (".png", ".jpg")]  # nothing of it drawn

    def flags(name):
        catalog = json.loads((out / "catalogs" / f"{name}.json").read_text())
        return {r["size_flag"] for r in catalog["rocks"]}, catalog["rocks"]

    assert flags("good.IMG")[0] == {"ok"} and flags("zero_hv.IMG")[0] == flags("huge_hv.IMG")[0] == {"no_camera_model"}
    for name in ("zero_quaternion.IMG", "three_quaternion.IMG"):
        names, rocks = flags(name)
        assert names == {"ok"} and all(r["site_x_m"] is None and r["diameter_m"] > 0 for r in rocks)
