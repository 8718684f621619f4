"""Real archive products as they are: the nine MER Spirit Navcam and Pancam products of
../shared/data/pds-products (attached PDS3 labels, 1024x1024, 16-bit MSB; EDR, RAD with a
16-bit mask on signed samples, RSL, FFL with missing-constant borders) decode to the size and
orientation their labels state, keep their camera models, and are sized on MER's ground.
Skipped, with the reason, where the shared data is absent."""

import json
from pathlib import Path

import numpy as np
import pytest

from rockdet.cli.main import main
from rockdet.io.archives.pds import product_files, read_pds_image
from rockdet.io.images import read_image

PRODUCTS = Path(__file__).resolve().parents[3] / "shared" / "data" / "pds-products"
NINE = sorted(PRODUCTS.glob("*.img")) if PRODUCTS.is_dir() else []
pytestmark = pytest.mark.skipif(len(NINE) != 9, reason=f"the nine real MER products are not at {PRODUCTS}")


def label_of(path: Path):
    import pdr

    return pdr.read(str(path), label_fn=str(path)).metadata


def stored_values(path: Path, label) -> np.ndarray:
    """The IMAGE object's samples straight from the file, in storage order, masked as labelled."""
    image = label["IMAGE"]
    start = (label["^IMAGE"] - 1) * label["RECORD_BYTES"]
    assert image["SAMPLE_TYPE"] == "MSB_INTEGER" and image["SAMPLE_BITS"] == 16  # PDS3: signed, big-endian
    dtype = ">i2"
    count = image["LINES"] * image["LINE_SAMPLES"]
    values = np.fromfile(path, dtype=dtype, count=count, offset=start).reshape(image["LINES"], image["LINE_SAMPLES"])
    mask = image["SAMPLE_BIT_MASK"]
    mask = int(mask, 2) if isinstance(mask, str) else mask
    return (values.astype(np.int64) & mask) if mask != 0xFFFF else values.astype(np.int64)


@pytest.mark.parametrize("path", NINE, ids=[p.name[:16] for p in NINE])
def test_each_product_decodes_as_its_label_says(path):
    label = label_of(path)
    product = read_pds_image(path)
    lines, samples = label["IMAGE"]["LINES"], label["IMAGE"]["LINE_SAMPLES"]
    assert product.values.shape == (lines, samples)
    # No LINE/SAMPLE_DISPLAY_DIRECTION: the default, lines down and samples right, is storage
    # order, so the first stored sample is the top-left pixel (and byte order and mask are right).
    assert "LINE_DISPLAY_DIRECTION" not in label["IMAGE"] and not any("turned" in n for n in product.notes)
    np.testing.assert_array_equal(product.values.astype(np.int64), stored_values(path, label))
    image = read_image(path)
    assert image.pixels.shape == (lines, samples, 3) and image.pixels.dtype == np.uint8
    model = label["GEOMETRIC_CAMERA_MODEL"]
    geometry = image.geometry
    assert image.geometry_problem is None and geometry.model.kind == model["MODEL_TYPE"]
    assert geometry.frame == "ROVER_FRAME" == model["REFERENCE_COORD_SYSTEM_NAME"]
    np.testing.assert_allclose(geometry.model.c, model["MODEL_COMPONENT_1"])
    assert geometry.site_rotation is not None  # ROVER_COORDINATE_SYSTEM: the rover in SITE_FRAME
    plane = geometry.ground_plane
    assert plane.level_z == pytest.approx(0.294) and "PigMER" in plane.source
    assert 1.4 < 0.294 - geometry.model.c[2] < 1.6  # the mast cameras' height over that ground
    assert product_files(path) == [path.resolve()]  # an attached label: one file (its doc pointers are elsewhere)


def test_the_top_rows_of_a_frame_looking_above_the_horizon_are_sky():
    """2n295663730: the label's model and pose put its top row 20-31 degrees above the site's
    horizontal; those rows are the bright, smooth sky, the bottom ones textured ground."""
    image = read_image(PRODUCTS / "2n295663730fflb1dnp1902l0m1.img")
    _, directions = image.geometry.model.rays(np.array([[0.5, 0.5], [1023.5, 0.5]]))
    elevation = np.degrees(np.arcsin(-(directions @ image.geometry.site_rotation.T)[:, 2]))
    assert (elevation > 15).all()
    gray = image.pixels[:, :, 0].astype(float)
    top, bottom = gray[8:72, 8:-8], gray[-72:-8, 8:-8]
    assert top.mean() > bottom.mean() + 50
    assert np.abs(np.diff(top, axis=0)).mean() < np.abs(np.diff(bottom, axis=0)).mean()


def test_data_report_and_predict_over_all_nine(tmp_path, oracle, capsys):
    from conftest import write_coco

    images = [{"id": n, "file_name": p.name, "width": 1024, "height": 1024} for n, p in enumerate(NINE, start=1)]
    coco = write_coco(tmp_path / "nine.json", images, [], [{"id": 1, "name": "rock"}])
    assert main(["data-report", str(coco), "--images", str(PRODUCTS)]) == 0
    report = capsys.readouterr().out
    assert "images readable: 9 of 9" in report and "cannot be read" not in report and "but the annotations say" not in report
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(PRODUCTS), "--tile", "1024"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 9 and summary["failed"] == 0
    kinds = set()
    for path in NINE:
        catalog = json.loads((out / "catalogs" / f"{path.name}.json").read_text())
        kinds.add(catalog["camera_model"]["model"])
        assert catalog["frame"] == "ROVER_FRAME" and catalog["ground_z_m"] == pytest.approx(0.294)
        assert catalog["camera_model"]["label"] == path.name and catalog["ground_area_m2"] > 1
        assert any("ground: z = 0.294 m in ROVER_FRAME" in note for note in catalog["image_notes"])
        sized = [rock for rock in catalog["rocks"] if rock["size_flag"] == "ok"]
        assert all(0 < rock["diameter_m"] < 20 and 0 < rock["range_m"] <= 50 for rock in sized)
        assert all(rock["site_x_m"] is not None for rock in sized)
        flags = {rock["size_flag"] for rock in catalog["rocks"]}
        assert flags <= {"ok", "above_horizon", "beyond_max_range", "unmeasurable"}
    assert kinds == {"CAHV", "CAHVOR"}
    ranged = [r for p in NINE for r in json.loads((out / "catalogs" / f"{p.name}.json").read_text())["rocks"]
              if r["size_flag"] == "ok"]
    assert len(ranged) > 50  # the dark blobs of nine real frames, sized on the ground
