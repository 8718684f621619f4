"""PDS3/PDS4 products and the camera models in their labels: decoding, CAHV/CAHVOR/CAHVORE both
ways, sizing with each image's own model, and bad products recorded while the batch goes on."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pds_products import (
    HAZCAM_CAHVORE,
    NAVCAM_CAHV,
    NAVCAM_ROVER_POSE,
    cahv_xml,
    camera_group,
    navcam_for,
    rover_group,
    terrain_values,
    write_pds3,
    write_pds4,
)

from rockdet.catalog.rock import Rock
from rockdet.cli.main import main
from rockdet.errors import ImageReadError
from rockdet.geometry.camera_models import CahvoreModel
from rockdet.geometry.frames import LabelGeometry, quaternion_matrix
from rockdet.geometry.ground import GroundView
from rockdet.geometry.rover_ground import GroundPlane
from rockdet.geometry.sizing import ImageFrame, LabelSizer, size_rocks_on_ground
from rockdet.io.archives.label_geometry import build_model, geometry_from_pds3
from rockdet.io.images import read_image

SHARED_LABELS = Path(__file__).resolve().parents[3] / "shared" / "data" / "planetary-labels"
Z_DOWN = np.array([0.0, 0.0, -1.0])


def models() -> dict[str, CahvoreModel]:
    hazcam = HAZCAM_CAHVORE
    return {"CAHV": build_model("CAHV", NAVCAM_CAHV), "CAHVOR": build_model("CAHVOR", hazcam[:6]),
            "CAHVORE": build_model("CAHVORE", hazcam)}


def ground_points(model: CahvoreModel, count: int = 300) -> np.ndarray:
    """Ground points (z = 0) spread over what the camera sees."""
    rng = np.random.default_rng(0)
    forward = model.a[:2] / np.linalg.norm(model.a[:2])
    across = np.array([-forward[1], forward[0]])
    distance, offset = rng.uniform(1.0, 6.0, count), rng.uniform(-1.5, 1.5, count)
    xy = model.c[:2] + distance[:, None] * forward + offset[:, None] * across
    return np.c_[xy, np.zeros(count)]


def ground_hits(model: CahvoreModel, pixels: np.ndarray) -> np.ndarray:
    origins, directions = model.rays(pixels)
    return origins + (-origins[:, 2] / directions[:, 2])[:, None] * directions


@pytest.mark.parametrize("kind", ["CAHV", "CAHVOR", "CAHVORE"])
def test_world_point_pixel_ray_ground_round_trip(kind):
    model = models()[kind]
    points = ground_points(model)
    pixels, imaged = model.project(points)
    assert imaged.sum() > 0.9 * len(points)
    np.testing.assert_allclose(ground_hits(model, pixels[imaged]), points[imaged], atol=1e-6)


def test_round_trip_with_the_models_of_the_shared_labels():
    labels = sorted(SHARED_LABELS.glob("*.LBL")) if SHARED_LABELS.is_dir() else []
    if not labels:
        pytest.skip(f"the shared planetary labels are not at {SHARED_LABELS}")
    import pdr

    kinds = set()
    for label in labels:
        metadata = pdr.read(str(label), label_fn=str(label)).metadata
        geometry = geometry_from_pds3(metadata)  # GEOMETRIC_CAMERA_MODEL and the Mastcam's ..._PARMS
        kinds.add(geometry.model.kind)
        assert geometry.frame == "ROVER_NAV_FRAME" and geometry.site_rotation is not None
        assert geometry.ground_plane.level_z == 0.0
        # Ground points the camera sees: rays of its lower image half, met with z = 0.
        side = max(int(metadata["IMAGE"]["LINES"]), int(metadata["IMAGE"]["LINE_SAMPLES"]))
        grid = np.stack(np.meshgrid(np.linspace(1, side - 1, 9), np.linspace(side / 2, side - 1, 9)), -1).reshape(-1, 2)
        points = ground_hits(geometry.model, grid)
        ahead = np.isfinite(points).all(axis=1) & (np.linalg.norm(points - geometry.model.c, axis=1) < 30)
        pixels, imaged = geometry.model.project(points[ahead])
        assert imaged.all() and ahead.sum() > 20
        np.testing.assert_allclose(pixels, grid[ahead], atol=1e-6)
        np.testing.assert_allclose(ground_hits(geometry.model, pixels), points[ahead], atol=1e-6)
    assert kinds == {"CAHV", "CAHVOR", "CAHVORE"}


def test_cahv_projection_matches_its_defining_formula():
    c, a, h, v = (np.array(x) for x in NAVCAM_CAHV)
    point = np.array([3.0, 0.5, 0.0])
    pixels, _ = build_model("CAHV", NAVCAM_CAHV).project(point)
    d = point - c
    assert pixels[0].tolist() == pytest.approx([d @ h / (d @ a) + 0.5, d @ v / (d @ a) + 0.5])


def navcam_view(side: int = 1024) -> GroundView:
    geometry = LabelGeometry(build_model("CAHV", navcam_for(side)), "ROVER_NAV_FRAME", Z_DOWN)
    return GroundView(geometry, GroundPlane.level(0.0, "test"))


def rock_box(model: CahvoreModel, ground: np.ndarray, diameter: float) -> Rock:
    """The box a rock of ``diameter`` standing at ``ground`` images to: its base line across the
    line of sight and its top at 0.6 diameters."""
    sight = ground[:2] - model.c[:2]
    across = np.array([-sight[1], sight[0], 0.0]) / np.linalg.norm(sight)
    points = np.array([ground - across * diameter / 2, ground + across * diameter / 2, ground,
                       ground + np.array([0.0, 0.0, -0.6 * diameter])])
    pixels, imaged = model.project(points)
    assert imaged.all()
    xs = pixels[:2, 0]
    return Rock(1, 0.9, float(xs.min()), float(pixels[3, 1]), float(xs.max()), float(pixels[2, 1]))


@pytest.mark.parametrize("ground, diameter", [((3.0, 0.6), 0.3), ((4.5, -0.4), 0.5), ((2.2, 0.9), 0.15)])
def test_rock_of_known_size_in_front_of_the_msl_navcam_model(ground, diameter):
    view = navcam_view()
    point = np.array([*ground, 0.0])
    rock = rock_box(view.geometry.model, point, diameter)
    (rock,) = size_rocks_on_ground(view, [rock])
    expected_range = np.linalg.norm(point[:2] - view.geometry.model.c[:2])
    assert rock.size_flag == "ok"
    assert rock.range_m == pytest.approx(expected_range, rel=0.02)
    assert rock.diameter_m == pytest.approx(diameter, rel=0.10)
    assert rock.height_m == pytest.approx(0.6 * diameter, rel=0.10)
    assert (rock.ground_x_m, rock.ground_y_m) == (pytest.approx(ground[0], abs=0.02), pytest.approx(ground[1], abs=0.02))


def cahv_ground_point(components: list, pixel: tuple[float, float]) -> np.ndarray:
    """Where a CAHV pixel meets z = 0, solved directly from the model's two plane equations."""
    c, a, h, v = (np.array(x, float) for x in components)
    u, w = pixel[0] - 0.5, pixel[1] - 0.5
    normals = np.array([h - u * a, v - w * a])
    xy = np.linalg.solve(normals[:, :2], normals @ c)  # n·(P - C) = 0 with P = (x, y, 0)
    return np.array([*xy, 0.0])


def test_each_product_is_sized_with_its_own_pointing(tmp_path):
    side = 128
    low = navcam_for(side)
    yaw = quaternion_matrix((math.cos(0.15), 0, 0, math.sin(0.15)))  # turned 17 deg and mast lowered
    raised = [tuple(np.array(low[0]) + (0, 0, 0.5)), *(tuple(yaw @ np.array(x)) for x in low[1:])]
    rocks = [(60, 90, 70, 100)]
    paths = [write_pds3(tmp_path / f"{name}.IMG", terrain_values(side, side, rocks),
                        camera_group("CAHV", components)) for name, components in (("a", low), ("b", raised))]
    sizer = LabelSizer()
    ranges = []
    for path, components in zip(paths, (low, raised)):
        image = read_image(path)
        (rock,) = sizer([Rock(1, 0.9, *map(float, rocks[0]))], ImageFrame.of(image)).rocks
        expected = cahv_ground_point(components, rock.ground_contact)
        assert rock.range_m == pytest.approx(np.linalg.norm(expected[:2] - np.array(components[0])[:2]), rel=1e-6)
        ranges.append(rock.range_m)
    assert abs(ranges[0] - ranges[1]) > 0.2


def test_pds3_values_follow_the_label(tmp_path):
    values = terrain_values(64, 48, [(10, 10, 20, 20)])
    values[0, :8] = 0  # the invalid/missing constant
    values[1, 0] = 0xF000 | 3000  # bits outside SAMPLE_BIT_MASK
    image = read_image(write_pds3(tmp_path / "a.IMG", values, sample_type="LSB_INTEGER"))
    assert image.pixels.shape == (48, 64, 3) and image.pixels[1, 0, 0] == image.pixels[5, 40, 0]  # masked high bits
    assert not image.valid[0, :8].any() and image.valid[2:].all()
    assert image.pixels[15, 15, 0] < 20 < 230 < image.pixels[30, 40, 0]
    assert any("SAMPLE_BIT_MASK 0xfff" in note for note in image.notes)
    assert any("stretched to 8 bit" in note and "valid pixels" in note for note in image.notes)
    rgb = np.stack([values, values // 2, values // 4])
    assert read_image(write_pds3(tmp_path / "rgb.IMG", rgb)).pixels[30, 40].tolist()[0] > \
        read_image(tmp_path / "rgb.IMG").pixels[30, 40].tolist()[2]  # band-sequential bands kept apart
    bayer = read_image(write_pds3(tmp_path / "raw.IMG", values, extra_image_keys="  BAYER_PATTERN = RGGB"))
    assert any("Bayer RGGB demosaiced" in note for note in bayer.notes)


def test_pds4_product_reads_with_its_camera_model(tmp_path):
    label = write_pds4(tmp_path / "m20.xml", terrain_values(64, 48, [(10, 10, 20, 20)]), cahv_xml(navcam_for(64)))
    for path in (label, label.with_suffix(".IMG")):  # by its label or its data file
        image = read_image(path)
        assert image.pixels.shape == (48, 64, 3) and image.geometry.model.kind == "CAHV"
        assert image.geometry.frame == "ROVER_NAV_FRAME"


@pytest.mark.parametrize("build, reason", [
    (lambda p: write_pds3(p, terrain_values(64, 48, []), pointer_shift=40), "^IMAGE points past the end of the file"),
    (lambda p: write_pds3(p, terrain_values(64, 48, []), keep_bytes=2000), "data section truncated"),
    (lambda p: write_pds4(p.with_suffix(".xml"), terrain_values(64, 48, []), keep_bytes=1000),
     "data section truncated"),
])
def test_products_whose_label_and_data_disagree_fail_with_one_reason(tmp_path, build, reason):
    path = build(tmp_path / "bad.IMG")
    with pytest.raises(ImageReadError, match=reason.replace("^", r"\^")):
        read_image(path)


def test_predict_sizes_each_product_and_records_bad_ones(tmp_path, oracle):
    rocks = [(60, 90, 72, 100), (20, 100, 30, 110)]
    inputs = tmp_path / "in"
    pose = rover_group(**NAVCAM_ROVER_POSE)
    for name, yaw in (("sol1", 0.0), ("sol2", 0.2)):
        turn = quaternion_matrix((math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)))
        components = [navcam_for(128)[0], *(tuple(turn @ np.array(x)) for x in navcam_for(128)[1:])]
        write_pds3(inputs / f"{name}.IMG", terrain_values(128, 128, rocks), camera_group("CAHV", components) + "\n" + pose)
    write_pds3(inputs / "unknown_model.IMG", terrain_values(128, 128, rocks), camera_group("CAHVX", navcam_for(128)))
    write_pds3(inputs / "no_model.IMG", terrain_values(128, 128, rocks))
    write_pds3(inputs / "past_end.IMG", terrain_values(128, 128, rocks), pointer_shift=90)
    write_pds3(inputs / "truncated.IMG", terrain_values(128, 128, rocks), keep_bytes=5000)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs), "--tile", "128"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 4 and summary["failed"] == 2
    reasons = {f["image"]: f["reason"] for f in summary["failures"]}
    assert "^IMAGE points past the end" in reasons["past_end.IMG"] and "truncated" in reasons["truncated.IMG"]
    assert any("unknown camera model type 'CAHVX'" in note for note in summary["notes"]["unknown_model.IMG"])
    sized = json.loads((out / "catalogs" / "sol1.IMG.json").read_text())
    assert sized["frame"] == "ROVER_NAV_FRAME" and sized["camera_model"]["model"] == "CAHV"
    assert sized["ground_area_m2"] > 1 and all(r["size_flag"] == "ok" for r in sized["rocks"])
    assert all(r["site_x_m"] is not None for r in sized["rocks"])
    flagged = json.loads((out / "catalogs" / "unknown_model.IMG.json").read_text())
    assert {r["size_flag"] for r in flagged["rocks"]} == {"no_camera_model"}
    plain = json.loads((out / "catalogs" / "no_model.IMG.json").read_text())
    assert len(plain["rocks"]) == 2 and "size_flag" not in plain["rocks"][0]
    assert (out / "site_map.png").is_file() and summary["site_map"]["images"] == 2
    areas = [json.loads((out / "catalogs" / f"{n}.IMG.json").read_text())["ground_area_m2"] for n in ("sol1", "sol2")]
    assert summary["sfd"]["area_m2"] == pytest.approx(sum(areas))  # every image's own footprint, summed
    assert main(["sfd", str(out), "--out", str(tmp_path / "sfd")]) == 0
    assert json.loads((tmp_path / "sfd" / "sfd.json").read_text())["area_m2"] == pytest.approx(sum(areas))
    first, second = (json.loads((out / "catalogs" / f"{n}.IMG.json").read_text())["rocks"] for n in ("sol1", "sol2"))
    assert first[0]["ground_y_m"] != pytest.approx(second[0]["ground_y_m"], abs=0.05)  # each its own pointing


def test_rocks_on_no_data_pixels_are_dropped(tmp_path, oracle):
    values = terrain_values(64, 64, [(10, 10, 20, 20), (40, 40, 50, 50)])
    values[40:50, 40:50] = 0  # a rock-dark patch the label calls missing data
    write_pds3(tmp_path / "in" / "a.IMG", values)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(tmp_path / "in"), "--camera", "none"]) == 0
    rocks = json.loads((out / "catalogs" / "a.IMG.json").read_text())["rocks"]
    assert [(r["rock_id"], r["x_min"]) for r in rocks] == [(1, 10)]


@pytest.mark.slow
def test_pds_products_go_through_data_report_training_and_predict(tmp_path, capsys):
    from conftest import CONFIGS, tiny_train_overrides, write_coco

    images, annotations = [], []
    rng = np.random.default_rng(3)
    for number in range(1, 7):
        boxes = [(int(x), int(y), int(x) + 14, int(y) + 12) for x, y in rng.integers(8, 70, size=(3, 2))]
        write_pds3(tmp_path / "data" / f"p{number}.IMG", terrain_values(96, 96, boxes),
                   camera_group("CAHV", navcam_for(96)) + "\n" + rover_group(**NAVCAM_ROVER_POSE))
        images.append({"id": number, "file_name": f"p{number}.IMG", "width": 96, "height": 96})
        annotations += [{"id": len(annotations) + 1, "image_id": number, "category_id": 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0]} for x0, y0, x1, y1 in boxes]
    train = write_coco(tmp_path / "data" / "train.json", images[:4], [a for a in annotations if a["image_id"] <= 4])
    val = write_coco(tmp_path / "data" / "val.json", images[4:], [a for a in annotations if a["image_id"] > 4])
    assert main(["data-report", str(train)]) == 0
    assert "images: 4 (0 without rocks)" in capsys.readouterr().out
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"),
                 *tiny_train_overrides({"train": train, "val": val}, run_dir, **{"trainer.max_steps": 2})]) == 0
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(run_dir / "checkpoints" / "last.ckpt"), "--out", str(out),
                 str(tmp_path / "data"), "--score-threshold", "0.0", "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 6 and summary["failed"] == 0
    catalog = json.loads((out / "catalogs" / "p1.IMG.json").read_text())
    assert catalog["frame"] == "ROVER_NAV_FRAME" and catalog["ground_area_m2"] > 0


def test_change_pcam_level_2b_frame_is_demosaiced_from_its_detached_label(tmp_path):
    values = np.random.default_rng(0).integers(1, 1023, (48, 64)).astype(np.uint16)  # 10-bit raw Bayer
    label = write_pds4(tmp_path / "CE4_PCAM_TEST.2BL", values)
    label.with_suffix(".IMG").rename(tmp_path / "CE4_PCAM_TEST.2B")
    label.write_text(label.read_text().replace("CE4_PCAM_TEST.IMG", "CE4_PCAM_TEST.2B"))
    for path in (label, tmp_path / "CE4_PCAM_TEST.2B"):
        image = read_image(path)
        assert image.pixels.shape == (48, 64, 3) and image.geometry is None
        assert "raw Bayer RGGB demosaiced (OpenCV)" in image.notes
