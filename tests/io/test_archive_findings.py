"""The six findings of issue 18 on real-shaped archive products, each fixed with a test here:

1. One product stopped the batch: a MER RAD product's SAMPLE_BIT_MASK of all 16 bits on signed
   samples raised OverflowError, and only RockdetError was caught while decoding
   (test_a_16_bit_mask_on_signed_samples_decodes, test_nothing_one_image_raises_ends_the_batch).
2. MSL archive labels lost their camera model: GEOMETRIC_CAMERA_MODEL_PARMS,
   ROVER_COORD_SYSTEM_PARMS / ROVER_COORDINATE_SYSTEM_PARMS, and the detached label preferred
   over the attached one that holds the model (test_msl_archive_group_spellings_are_read,
   test_the_attached_label_gives_the_model_the_detached_one_lacks).
3. A lowercase label beside an uppercase data file was missed (test_a_label_is_found_whatever_its_case).
4. Real Chang'e 4 arrays have no local_identifier (test_change4_products, and
   test_an_array_without_local_identifier_is_found_by_its_class here).
5. Band-last colour images (TCAM 2C) came out as nonsense (test_change4_products:
   test_tcam_level_2c_keeps_its_bands_last_and_its_8_bit_colours, axes in any order).
6. Misleading reasons: FITS without astropy, Git LFS pointers, HTML pages saved as .IMG, and
   8-bit products stretched (test_honest_reasons_for_what_is_not_a_product,
   test_fits_backed_pds4_names_the_missing_extra, test_8_bit_products_are_not_stretched_unless_asked).

Also: PDS3 band storage orders, bare-binary bit masks, display directions, and one boundary per
image in predict (decoding, sizing, catalog writing), the training reader and data-report.
"""

import json

import numpy as np
import pytest
from change4_products import lcam_name, write_change4
from pds_products import (
    NAVCAM_ROVER_POSE,
    cahv_xml,
    camera_group,
    navcam_for,
    rover_group,
    terrain_values,
    write_detached_label,
    write_pds3,
    write_pds4,
)

from rockdet.catalog.rock import Rock
from rockdet.cli.main import main
from rockdet.errors import DataError, ImageReadError
from rockdet.geometry.sizing import ImageFrame, LabelSizer
from rockdet.io.archives.pds import read_pds_image
from rockdet.io.images import read_image

ROCKS = [(20, 20, 30, 30)]


def navcam_product(path, side: int = 64, **kwargs):
    groups = camera_group("CAHV", navcam_for(side)) + "\n" + rover_group(**NAVCAM_ROVER_POSE)
    return write_pds3(path, terrain_values(side, side, ROCKS), groups, **kwargs)


def test_a_16_bit_mask_on_signed_samples_decodes(tmp_path):
    values = terrain_values(64, 48, ROCKS).astype(np.int16)
    values[0, 0] = -5
    path = write_pds3(tmp_path / "rad.IMG", values, mask="2#1111111111111111#")
    product = read_pds_image(path)
    assert product.values.dtype.kind == "i" and product.values[0, 0] == -5 and product.values[40, 40] == 3000
    assert "SAMPLE_BIT_MASK 0xffff: all 16 bits valid" in product.notes


def test_a_bit_mask_of_bare_binary_digits_is_binary(tmp_path):
    values = terrain_values(64, 48, ROCKS)
    values[1, 1] = 0xF000 | 3000
    product = read_pds_image(write_pds3(tmp_path / "rsl.IMG", values, mask="0000111111111111"))
    assert product.values[1, 1] == 3000 and "SAMPLE_BIT_MASK 0xfff applied (12 valid bits)" in product.notes


@pytest.mark.parametrize("storage", ["BAND_SEQUENTIAL", "LINE_INTERLEAVED", "SAMPLE_INTERLEAVED"])
def test_pds3_band_storage_types_decode_to_the_same_colours(tmp_path, storage):
    base = terrain_values(64, 48, ROCKS)
    rgb = np.stack([base, base // 2, base // 4])
    product = read_pds_image(write_pds3(tmp_path / "rgb.IMG", rgb, band_storage=storage))
    np.testing.assert_array_equal(product.values, np.moveaxis(rgb, 0, -1))


def test_lines_displayed_upwards_are_turned_with_their_camera_model(tmp_path):
    side = 64
    values = terrain_values(side, side, ROCKS)
    values[3, 10] = 100  # stored line 3 is displayed third from the bottom
    upright = read_image(navcam_product(tmp_path / "up.IMG"))
    turned = read_image(navcam_product(tmp_path / "down.IMG", extra_image_keys="  LINE_DISPLAY_DIRECTION = UP"))
    raw = read_pds_image(write_pds3(tmp_path / "raw.IMG", values, extra_image_keys="  LINE_DISPLAY_DIRECTION = UP"))
    assert raw.values[side - 1 - 3, 10] == 100 and any("lines reversed" in note for note in raw.notes)
    point = np.array([[3.0, 0.5, 0.0]])  # a ground point in view: its row turns with the image
    (x, y), = upright.geometry.model.project(point)[0]
    (x_turned, y_turned), = turned.geometry.model.project(point)[0]
    assert x_turned == pytest.approx(x) and y_turned == pytest.approx(side - y)


def msl_archive_groups() -> str:
    camera = camera_group("CAHV", navcam_for(48)).replace("GEOMETRIC_CAMERA_MODEL", "GEOMETRIC_CAMERA_MODEL_PARMS")
    return camera + "\n" + rover_group(**NAVCAM_ROVER_POSE).replace("ROVER_COORDINATE_SYSTEM", "ROVER_COORD_SYSTEM_PARMS")


@pytest.mark.parametrize("pose_group", ["ROVER_COORD_SYSTEM_PARMS", "ROVER_COORDINATE_SYSTEM_PARMS"])
def test_msl_archive_group_spellings_are_read(tmp_path, pose_group):
    data = write_pds3(tmp_path / "NLB_1.IMG", terrain_values(64, 48, ROCKS))
    write_detached_label(data, tmp_path / "NLB_1.LBL", msl_archive_groups().replace("ROVER_COORD_SYSTEM_PARMS", pose_group))
    image = read_image(data)
    assert image.geometry.model.kind == "CAHV" and image.geometry.frame == "ROVER_NAV_FRAME"
    assert image.geometry.site_rotation is not None and image.geometry.source == "NLB_1.LBL"


def test_the_attached_label_gives_the_model_the_detached_one_lacks(tmp_path):
    data = navcam_product(tmp_path / "NLB_2.IMG", side=48)
    write_detached_label(data, tmp_path / "NLB_2.LBL", shape=(48, 48))
    image = read_image(data)
    assert image.geometry.model.kind == "CAHV" and image.geometry.source == "the label attached to NLB_2.IMG"
    assert "camera model CAHV in ROVER_NAV_FRAME from the label attached to NLB_2.IMG" in image.notes
    assert "PDS3 NLB_2.LBL" in image.notes  # the pixels as the detached label describes them


def test_a_label_is_found_whatever_its_case(tmp_path):
    label = write_pds4(tmp_path / "0606MR_DXXX.xml", terrain_values(64, 48, ROCKS), cahv_xml(navcam_for(64)))
    label.rename(tmp_path / "0606mr_dxxx.xml")
    image = read_image(tmp_path / "0606MR_DXXX.IMG")
    assert image.pixels.shape == (48, 64, 3) and image.geometry.model.kind == "CAHV"


def test_an_array_without_local_identifier_is_found_by_its_class(tmp_path):
    data = write_change4(tmp_path, lcam_name(), np.full((48, 64), 77, np.uint8), ("Line", "Sample"), "UnsignedByte",
                         "LCAM")
    assert "local_identifier>None" in data.with_name(data.name + "L").read_text()
    assert read_image(data).pixels[10, 10, 0] == 77


def test_honest_reasons_for_what_is_not_a_product(tmp_path):
    lfs = tmp_path / "lfs.IMG"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 2138112\n")
    html = tmp_path / "page.IMG"
    html.write_text("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n")
    with pytest.raises(ImageReadError, match="is a Git LFS pointer, not the product's data"):
        read_image(lfs)
    with pytest.raises(ImageReadError, match=r"is an HTML page, not a PDS product \(a failed download\?\)"):
        read_image(html)


def test_fits_backed_pds4_names_the_missing_extra(tmp_path):
    import importlib.util

    label = write_pds4(tmp_path / "fits.xml", terrain_values(64, 48, ROCKS))
    cards = ["SIMPLE  =                    T", "BITPIX  =                   16", "NAXIS   =                    2",
             "NAXIS1  =                   64", "NAXIS2  =                   48", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode()
    (tmp_path / "fits.fits").write_bytes(header + terrain_values(64, 48, ROCKS).astype(">i2").tobytes())
    label.write_text(label.read_text().replace("fits.IMG", "fits.fits").replace(">0</offset>", ">2880</offset>")
                     .replace("UnsignedMSB2", "SignedMSB2"))
    if importlib.util.find_spec("astropy") is not None:
        assert read_image(label).pixels.shape == (48, 64, 3)
        return
    with pytest.raises(ImageReadError, match=r"FITS-backed PDS4 products needs astropy \(pip install astropy\)"):
        read_image(label)


def test_8_bit_products_are_not_stretched_unless_asked(tmp_path):
    values = (np.arange(48 * 64).reshape(48, 64) % 50 + 10).astype(np.uint8)  # 10..59: dim, calibrated
    data = write_change4(tmp_path, lcam_name(), values, ("Line", "Sample"), "UnsignedByte", "LCAM")
    kept = read_image(data)
    np.testing.assert_array_equal(kept.pixels[:, :, 0], values)
    assert "8-bit values kept as the product gives them (not stretched)" in kept.notes
    assert read_image(data, stretch_8bit=True).pixels.max() == 255


def test_nothing_one_image_raises_ends_the_batch(tmp_path, oracle, monkeypatch):
    """Non-rockdet exceptions injected into predict's reading (the call itself), pdr, OpenCV and
    numpy, sizing and catalog writing: each fails (or, sizing, unsizes) its own image only."""
    import cv2
    import pdr

    import rockdet.geometry.sizing as sizing
    import rockdet.io.archives.pds3 as pds3
    import rockdet.predict.lightning_run as predict_run

    inputs = tmp_path / "in"
    for name in ("good", "rad", "reader", "pdr", "opencv", "catalog"):
        navcam_product(inputs / f"{name}.IMG", extra_image_keys="  BAYER_PATTERN = RGGB" if name == "opencv" else "",
                       mask="2#1111111111111111#" if name == "rad" else "2#0000111111111111#")

    def failing(function, name, error):
        def wrapper(*args, **kwargs):
            if any(name in str(a) for a in args) or name == "any":
                raise error
            return function(*args, **kwargs)
        return wrapper

    original_read, original_getitem = predict_run.read_image, pdr.Data.__getitem__
    monkeypatch.setattr(predict_run, "read_image", failing(original_read, "reader.IMG", RuntimeError("injected")))
    monkeypatch.setattr(pdr.Data, "__getitem__", lambda self, key: (_ for _ in ()).throw(OverflowError("pdr injected"))
                        if "pdr.IMG" in str(self.filename) else original_getitem(self, key))
    original_demosaic = pds3.demosaic_if_bayer
    monkeypatch.setattr(pds3, "demosaic_if_bayer", lambda values, pattern, notes: (_ for _ in ()).throw(
        cv2.error("opencv injected")) if pattern else original_demosaic(values, pattern, notes))
    original_valid = pds3.valid_pixels
    monkeypatch.setattr(pds3, "valid_pixels", lambda values, constants: (_ for _ in ()).throw(
        FloatingPointError("numpy injected")) if values[0, 0] == 4242 else original_valid(values, constants))
    values = terrain_values(64, 64, ROCKS)
    values[0, 0] = 4242
    groups = camera_group("CAHV", navcam_for(64)) + "\n" + rover_group(**NAVCAM_ROVER_POSE)
    write_pds3(inputs / "numpy.IMG", values, groups, mask="2#1111111111111111#")
    original_size = sizing.size_rocks_on_ground
    monkeypatch.setattr(sizing, "size_rocks_on_ground", lambda view, rocks, *more: (_ for _ in ()).throw(
        ValueError("sizing injected")) if view.geometry.model.c[0] < 0 else original_size(view, rocks, *more))
    shifted = [(-0.1, 0.3, -1.8), *navcam_for(64)[1:]]
    write_pds3(inputs / "sizing.IMG", terrain_values(64, 64, ROCKS), camera_group("CAHV", shifted))
    original_write = predict_run.write_catalog
    monkeypatch.setattr(predict_run, "write_catalog", lambda catalog, *a: (_ for _ in ()).throw(KeyError("catalog injected"))
                        if "catalog.IMG" in catalog.image else original_write(catalog, *a))

    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    reasons = {f["image"]: f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"reader.IMG", "pdr.IMG", "opencv.IMG", "numpy.IMG", "catalog.IMG"}
    assert reasons["reader.IMG"] == "RuntimeError: injected"
    assert "OverflowError: pdr injected" in reasons["pdr.IMG"] and "error: opencv injected" in reasons["opencv.IMG"]
    assert "FloatingPointError: numpy injected" in reasons["numpy.IMG"] and "KeyError" in reasons["catalog.IMG"]
    assert summary["done"] == 3 and all("\n" not in r for r in reasons.values())
    for name in ("good", "rad"):
        catalog = json.loads((out / "catalogs" / f"{name}.IMG.json").read_text())
        assert catalog["rocks"] and {r["size_flag"] for r in catalog["rocks"]} == {"ok"}
    unsized = json.loads((out / "catalogs" / "sizing.IMG.json").read_text())
    assert {r["size_flag"] for r in unsized["rocks"]} == {"no_camera_model"}
    assert any("sizing failed (ValueError: sizing injected)" in note for note in unsized["image_notes"])


def test_the_training_reader_and_data_report_fail_one_record_in_one_line(tmp_path, monkeypatch, capsys):
    from conftest import write_coco

    from rockdet.data import dataset as dataset_module
    from rockdet.data.dataset import RockDataset
    from rockdet.data.records import AnnotatedImage

    good = navcam_product(tmp_path / "good.IMG")
    broken = tmp_path / "broken.IMG"
    broken.write_text("<html><body>502 Bad Gateway</body></html>")
    records = [AnnotatedImage(good, 64, 64, np.zeros((0, 4), np.float32)),
               AnnotatedImage(broken, 64, 64, np.zeros((0, 4), np.float32))]
    dataset = RockDataset(records)
    assert dataset[0][0].shape == (3, 64, 64)
    with pytest.raises(DataError, match=r"broken.IMG: is an HTML page"):
        dataset[1]
    monkeypatch.setattr(dataset_module, "read_image", lambda path: (_ for _ in ()).throw(MemoryError("injected")))
    with pytest.raises(DataError, match=r"good.IMG: cannot decode \(MemoryError: injected\)"):
        dataset[0]
    monkeypatch.undo()
    images = [{"id": 1, "file_name": "good.IMG", "width": 64, "height": 64},
              {"id": 2, "file_name": "broken.IMG", "width": 64, "height": 64}]
    coco = write_coco(tmp_path / "set.json", images, [], [{"id": 1, "name": "rock"}])
    assert main(["data-report", str(coco)]) == 0
    out = capsys.readouterr().out
    assert "images readable: 1 of 2" in out and "broken.IMG: cannot be read (is an HTML page" in out


def test_a_windowed_frame_that_breaks_mid_image_fails_alone(tmp_path, oracle, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    from oracle import draw_rocks

    from rockdet.io.windowed import WindowedTiff

    for name in ("a.tif", "b.tif"):
        (tmp_path / "in").mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / "in" / name, draw_rocks(300, 200, [(10, 10, 40, 30)]), tile=(64, 64))
    original = WindowedTiff._tile
    calls = []

    def tile(self, index):  # b.tif's fourth tile, after its first windows went out
        if self.path.name == "b.tif":
            calls.append(index)
            if len(calls) > 3:
                raise MemoryError("tile decoder gave up")
        return original(self, index)

    monkeypatch.setattr(WindowedTiff, "_tile", tile)
    out = tmp_path / "out"
    # In a decoding worker: the failure travels back with b.tif's last tiles.
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(tmp_path / "in"), "--tile", "96",
                 "--camera", "none", "--workers", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [(f["image"], f["reason"]) for f in summary["failures"]] == [("b.tif", "MemoryError: tile decoder gave up")]
    assert summary["done"] == 1 and (out / "catalogs" / "a.tif.json").is_file()
    assert not (out / "catalogs" / "b.tif.json").exists()


def test_product_files_are_every_file_of_a_product(tmp_path):
    from rockdet.io.archives.pds import product_files

    data = write_pds3(tmp_path / "NLB_3.IMG", terrain_values(64, 48, ROCKS))
    label = write_detached_label(data, tmp_path / "nlb_3.lbl")  # a lowercase detached label
    (tmp_path / "elsewhere").mkdir()
    expected = sorted([data.resolve(), label.resolve()])
    assert product_files(data) == product_files(label) == expected
    hostile = write_detached_label(data, tmp_path / "h.LBL", pointer='"../elsewhere/x.IMG"')
    assert product_files(hostile) == [hostile.resolve()]  # nothing outside its folder is named
    pds4 = write_pds4(tmp_path / "m20.xml", terrain_values(64, 48, ROCKS))
    assert product_files(pds4) == sorted([pds4.resolve(), pds4.with_suffix(".IMG").resolve()])
    assert product_files(pds4.with_suffix(".IMG")) == product_files(pds4)


def test_mer_frames_are_sized_on_the_ground_jpl_documents(tmp_path):
    """MER ROVER_FRAME: origin 0.294 m above the ground (JPL VICAR/PIG, PigMER); a SITE_FRAME model
    uses the ground below the rover, placed with its pose; an undocumented frame needs --ground-z."""
    side = 64
    host = 'INSTRUMENT_HOST_ID = MER2\nMISSION_NAME = "MARS EXPLORATION ROVER"\n'
    pose = {"offset": (-18.2, 2.7, -0.73), "quaternion": (1.0, 0.0, 0.0, 0.0)}
    made = {}
    for frame in ("ROVER_FRAME", "SITE_FRAME", "PMA_FRAME"):
        groups = host + camera_group("CAHV", navcam_for(side), frame) + "\n" + rover_group(**pose, frame="ROVER_FRAME")
        made[frame] = read_image(write_pds3(tmp_path / f"{frame}.IMG", terrain_values(side, side, ROCKS), groups))
    assert made["ROVER_FRAME"].geometry.ground_plane.level_z == pytest.approx(0.294)
    assert "PigMER" in made["ROVER_FRAME"].geometry.ground_plane.source
    np.testing.assert_allclose(made["SITE_FRAME"].geometry.ground_plane.point, (-18.2, 2.7, -0.73 + 0.294))
    assert made["PMA_FRAME"].geometry.ground_plane is None
    rock = Rock(1, 0.9, 20.0, 40.0, 30.0, 50.0)
    sized = LabelSizer()([rock], ImageFrame.of(made["PMA_FRAME"]))
    assert sized.rocks[0].size_flag == "no_camera_model" and "--ground-z" in sized.record["geometry_note"]
    sized = LabelSizer()([rock], ImageFrame.of(made["ROVER_FRAME"]))
    assert sized.rocks[0].size_flag == "ok" and sized.record["ground_z_m"] == pytest.approx(0.294)
    assert rock.size_flag is None  # rocks are values: the sizer returned new ones
