"""Tiled TIFF frames are read window by window, giving the same pixels and rocks as whole-image
decoding."""

import json

import numpy as np
import pytest
from oracle import draw_rocks

from rockdet.cli.main import main
from rockdet.io.images import read_image
from rockdet.io.windowed import WindowedTiff, is_windowed_tiff

tifffile = pytest.importorskip("tifffile")


def write_tiled(path, pixels, tile=64, compression="zlib"):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, pixels, tile=(tile, tile), compression=compression)
    return path


@pytest.mark.parametrize("values", ["rgb8", "gray16"])
def test_windows_equal_the_whole_image(tmp_path, values):
    rgb = draw_rocks(300, 200, [(10, 10, 40, 30), (250, 150, 290, 190)])
    pixels = rgb if values == "rgb8" else (rgb[:, :, 0].astype(np.uint16) * 200 + np.arange(300, dtype=np.uint16))
    path = write_tiled(tmp_path / "frame.tif", pixels)
    assert is_windowed_tiff(path)
    whole = read_image(path).pixels
    frame = WindowedTiff(path)
    try:
        assert frame.shape == whole.shape
        for y0, y1, x0, x1 in [(0, 200, 0, 300), (0, 64, 0, 64), (60, 130, 100, 299), (150, 200, 250, 300), (5, 6, 7, 9)]:
            np.testing.assert_array_equal(frame[y0:y1, x0:x1], whole[y0:y1, x0:x1])
    finally:
        frame.close()
    tifffile.imwrite(tmp_path / "strips.tif", rgb)  # a TIFF in strips: decoded whole, as before
    assert not is_windowed_tiff(tmp_path / "strips.tif")


def test_predict_on_a_tiled_tiff_finds_the_rocks_whole_image_decoding_finds(tmp_path, oracle, monkeypatch):
    rocks = [(10, 10, 40, 30), (100, 60, 130, 90), (250, 150, 290, 190), (60, 170, 75, 199)]
    write_tiled(tmp_path / "in" / "frame.tif", draw_rocks(300, 200, rocks))
    found = {}
    for mode in ("windowed", "whole"):
        if mode == "whole":
            monkeypatch.setattr("rockdet.predict.lightning_run.is_windowed_tiff", lambda path: False)
        out = tmp_path / mode
        assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(tmp_path / "in"),
                     "--tile", "96", "--camera", "none"]) == 0
        catalog = json.loads((out / "catalogs" / "frame.tif.json").read_text())
        found[mode] = [(r["x_min"], r["y_min"], r["x_max"], r["y_max"]) for r in catalog["rocks"]]
        if mode == "windowed":
            assert any("windowed decoding" in note for note in catalog["image_notes"])
    assert found["windowed"] == found["whole"] and sorted(found["whole"]) == sorted(rocks)


def test_a_truncated_tile_fails_the_image_with_one_reason(tmp_path, oracle):
    path = write_tiled(tmp_path / "in" / "frame.tif", draw_rocks(300, 200, []), compression=None)
    with tifffile.TiffFile(path) as tiff:
        end = max(o + c for o, c in zip(tiff.pages.first.dataoffsets, tiff.pages.first.databytecounts))
    path.write_bytes(path.read_bytes()[:end - 5000])
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(tmp_path / "in"), "--tile", "96"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 1 and "truncated" in summary["failures"][0]["reason"]
