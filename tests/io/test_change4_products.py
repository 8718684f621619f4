"""Chang'e 4 camera products whose labels follow the real GRAS structure (change4_products):
TCAM 2C colour (Line x Sample x Band, 8-bit, band last), PCAM 2B raw RGGB Bayer (16-bit LSB),
LCAM grey (8-bit); the array has no local_identifier and is found by its class. Also PDS4
arrays with their axes in other orders, and the real Mars 2020 label's axis layout."""

import numpy as np
import pytest
from change4_products import lcam_name, pcam_name, rggb_mosaic, tcam_name, write_change4

from rockdet.io.archives.pds import product_files, read_pds_image
from rockdet.io.images import read_image

RGB = (200, 120, 40)


def tcam_values(height: int = 48, width: int = 64) -> np.ndarray:
    values = np.empty((height, width, 3), dtype=np.uint8)
    values[:] = RGB
    values[5, 7] = (255, 0, 0)  # one red pixel: line 5, sample 7
    return values


def test_tcam_level_2c_keeps_its_bands_last_and_its_8_bit_colours(tmp_path):
    data = write_change4(tmp_path, tcam_name(), tcam_values(), ("Line", "Sample", "Band"), "UnsignedByte", "TCAM")
    for path in (data, data.with_name(data.name + "L")):  # by its data file or its label
        image = read_image(path)
        assert image.pixels.shape == (48, 64, 3)
        assert tuple(image.pixels[20, 30]) == RGB and tuple(image.pixels[5, 7]) == (255, 0, 0)
        assert "PDS4 " + data.name + "L (Array_3D_Image)" in image.notes
        assert "8-bit values kept as the product gives them (not stretched)" in image.notes
        assert image.geometry is None and image.geometry_problem is None
    stretched = read_image(data, stretch_8bit=True)
    assert any(note.startswith("stretched to 8 bit") for note in stretched.notes)
    assert product_files(data) == sorted([data.resolve(), data.with_name(data.name + "L").resolve()])


def test_pcam_level_2b_is_a_16_bit_lsb_rggb_mosaic(tmp_path):
    mosaic = rggb_mosaic(48, 64, red=800, green=400, blue=100)  # 10-bit values, LSB first
    data = write_change4(tmp_path, pcam_name(), mosaic, ("Line", "Sample"), "UnsignedLSB2", "PCAM")
    assert data.read_bytes()[:2] == (800).to_bytes(2, "little")
    product = read_pds_image(data)
    assert product.values.shape == (48, 64, 3)
    assert tuple(product.values[24, 32]) == (800, 400, 100)  # demosaiced to the right colours
    image = read_image(data)
    assert "raw Bayer RGGB demosaiced (OpenCV)" in image.notes
    red, green, blue = image.pixels[24, 32].astype(int)
    assert red > green > blue


def test_lcam_grey_frame_keeps_its_values(tmp_path):
    values = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) % 251
    data = write_change4(tmp_path, lcam_name(), values.astype(np.uint8), ("Line", "Sample"), "UnsignedByte", "LCAM")
    image = read_image(data)
    assert image.pixels.shape == (48, 64, 3)
    np.testing.assert_array_equal(image.pixels[:, :, 0], values)


@pytest.mark.parametrize("axes", [("Band", "Line", "Sample"), ("Line", "Band", "Sample"), ("Sample", "Line", "Band")])
def test_pds4_axes_in_any_order_are_read_by_name(tmp_path, axes):
    image = tcam_values()  # [line, sample, band]
    order = [("Line", "Sample", "Band").index(name) for name in axes]
    data = write_change4(tmp_path, tcam_name(), np.transpose(image, order), axes, "UnsignedByte", "TCAM")
    decoded = read_image(data).pixels
    np.testing.assert_array_equal(decoded, image)


def test_first_index_fastest_arrays_are_read_in_that_order(tmp_path):
    image = tcam_values()
    stored = np.transpose(image, (2, 1, 0))  # Line runs fastest: stored as [band, sample, line]
    data = write_change4(tmp_path, tcam_name(), stored, ("Line", "Sample", "Band"), "UnsignedByte", "TCAM",
                         edits={"Last Index Fastest": "First Index Fastest"}, label_shape=image.shape)
    np.testing.assert_array_equal(read_image(data).pixels, image)


def test_the_real_mars_2020_label_reads_its_band_first_array_and_camera_model(tmp_path):
    from pathlib import Path

    source = Path(__file__).resolve().parents[3] / "shared" / "data" / "planetary-labels" / \
        "NLF_0629_0722782785_631ECM_N0301344NCAM00427_06_095J01.xml"
    if not source.is_file():
        pytest.skip(f"the shared Mars 2020 label is not at {source}")
    label = tmp_path / source.name
    label.write_bytes(source.read_bytes())
    band_first = np.zeros((3, 976, 1296), dtype=np.uint8)  # axes Band, Line, Sample as the label has them
    band_first[0], band_first[1], band_first[2] = 90, 60, 30
    band_first[:, 100, 200] = (250, 10, 10)
    (tmp_path / "NLF_0629_0722782785_631ECM_N0301344NCAM00427_06_095J01.IMG").write_bytes(
        bytes(46656) + band_first.tobytes())  # the label's offset: its ODL3 and VICAR headers, here zeros
    image = read_image(label)
    assert image.pixels.shape == (976, 1296, 3)
    assert tuple(image.pixels[500, 500]) == (90, 60, 30) and tuple(image.pixels[100, 200]) == (250, 10, 10)
    geometry = image.geometry
    assert geometry.model.kind == "CAHVORE" and geometry.frame == "ROVER_NAV_FRAME"
    assert geometry.site_rotation is not None and geometry.ground_plane.level_z == pytest.approx(0.0)
