"""Predict: tiled inference, catalogs, bad inputs, resume and atomic writes."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from oracle import DarkBlobDetector, draw_rocks, oracle_info, save, use_model
from PIL import Image

from rockdet.catalog.files import read_catalog_csv
from rockdet.catalog.rock import BASE_COLUMNS
from rockdet.cli.main import main
from rockdet.predict.detect import detect_image, detect_images
from rockdet.predict.settings import PredictSettings

ROCKS = [(10, 10, 20, 30), (56, 40, 76, 52), (100, 100, 104, 103)]  # the second crosses x=64


def test_tiled_prediction_finds_each_rock_once_with_exact_boxes():
    pixels = draw_rocks(130, 120, ROCKS)
    rocks = detect_image(DarkBlobDetector(), pixels, PredictSettings(tile=64, overlap=0.25), 64)
    boxes = sorted((r.x_min, r.y_min, r.x_max, r.y_max) for r in rocks)
    assert boxes == sorted(ROCKS)
    assert [r.rock_id for r in rocks] == [1, 2, 3]


def test_tiles_of_many_images_share_forward_passes():
    model = DarkBlobDetector()
    images = [draw_rocks(130, 120, ROCKS) for _ in range(3)]  # 9 tiles each at 64 px
    results = list(detect_images(model, images, PredictSettings(tile=64, overlap=0.25, tile_batch=8), 64))
    assert len(results) == 3 and all(len(r) == 3 for r in results)
    assert sum(model.calls) == 27 and max(model.calls) == 8 and len(model.calls) == 4


def test_full_image_pass_and_no_tiling_for_small_images():
    model = DarkBlobDetector()
    rocks = detect_image(model, draw_rocks(40, 30, [(5, 5, 9, 9)]), PredictSettings(), 64)
    assert model.calls == [1] and len(rocks) == 1
    rocks = detect_image(model, draw_rocks(130, 120, ROCKS),
                          PredictSettings(tile=64, overlap=0.25, full_image_pass=True, tile_batch=8), 64)
    assert model.calls[1:] == [8, 2]  # 9 tiles + the whole image
    assert len(rocks) == 3


def test_masks_give_area_equivalent_diameter_axes_and_contact_point():
    pixels = draw_rocks(130, 120, [])
    yy, xx = np.mgrid[0:120, 0:130]
    disk = (xx - 64.5) ** 2 + (yy - 60.5) ** 2 <= 10 ** 2  # crosses the tile border at x=64
    pixels[disk] = 30
    (rock,) = detect_image(DarkBlobDetector(with_masks=True), pixels,
                            PredictSettings(tile=64, overlap=0.25), 64)
    assert rock.mask_area_px == disk.sum()
    assert rock.diameter_px == pytest.approx(2 * math.sqrt(disk.sum() / math.pi))
    assert rock.diameter_px == pytest.approx(20, rel=0.05)
    assert rock.major_axis_px == pytest.approx(20, rel=0.05) and rock.minor_axis_px == pytest.approx(20, rel=0.05)
    assert rock.contact_y == 71 and rock.contact_x == pytest.approx(65, abs=0.6)


def write_batch(folder, count=4):
    for i in range(count):
        save(draw_rocks(130, 120, ROCKS[: i % 3 + 1]), folder / "sub" / f"img{i}.png")
    return folder


def test_predict_writes_catalog_per_image_summary_and_rocks_csv(tmp_path, oracle):
    inputs = write_batch(tmp_path / "in")
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", "model.ckpt", "--out", str(out), str(inputs),
                 "--tile", "64", "--overlap", "0.25", "--overlay", "--format", "csv,json,parquet"])
    assert code == 0
    rows = read_catalog_csv(out / "catalogs" / "sub" / "img1.png.csv")
    assert list(rows[0]) == BASE_COLUMNS
    assert sorted((r["x_min"], r["y_min"], r["x_max"], r["y_max"]) for r in rows) == [(10, 10, 20, 30), (56, 40, 76, 52)]
    assert [r["rock_id"] for r in rows] == [1, 2]  # by score, then size: the larger rock first
    first = next(r for r in rows if r["x_min"] == 10)
    assert (first["x_center"], first["y_center"], first["width_px"], first["height_px"]) == (15, 20, 10, 20)
    assert first["diameter_px"] == 15 and first["area_px"] == pytest.approx(math.pi / 4 * 200, abs=1e-3)
    assert first["score"] == pytest.approx(0.9) and first["range_m"] is None and first["diameter_m"] is None
    document = json.loads((out / "catalogs" / "sub" / "img1.png.json").read_text())
    import hashlib

    expected = hashlib.sha256((inputs / "sub" / "img1.png").read_bytes()).hexdigest()
    assert document["complete"] and document["width"] == 130 and document["sha256"] == expected
    assert document["tiling"]["tile"] == 64 and document["camera"]["mode"] == "auto"  # PNGs: unsized
    assert document["rocks"] == json.loads(json.dumps(document["rocks"])) and len(document["rocks"]) == 2
    import pyarrow.parquet as pq

    assert pq.read_table(out / "catalogs" / "sub" / "img1.png.parquet").column("x_min").to_pylist() == [56, 10]
    assert (out / "overlays" / "sub" / "img1.png.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["done"], summary["failed"], summary["rocks_total"]) == (4, 4, 0, 1 + 2 + 3 + 1)
    assert summary["versions"]["torch"]
    all_rows = read_catalog_csv(out / "rocks.csv")
    assert len(all_rows) == 7 and all_rows[0]["image"] == "sub/img0.png"


def make_bad_inputs(folder):
    folder.mkdir(parents=True)
    save(draw_rocks(80, 70, [(5, 5, 15, 15)]), folder / "good.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    buffer = folder / "full.jpg"
    Image.fromarray(draw_rocks(80, 70, [(5, 5, 15, 15)])).save(buffer, quality=90)
    (folder / "truncated.jpg").write_bytes(buffer.read_bytes()[:300])
    buffer.unlink()
    (folder / "notes.jpg").write_text("not an image at all")
    (folder / "empty.png").write_bytes(b"")
    Image.fromarray(draw_rocks(80, 70, [(5, 5, 15, 15)])[:, :, 0]).save(folder / "gray.png")
    Image.fromarray(np.dstack([draw_rocks(80, 70, [(5, 5, 15, 15)]), np.full((70, 80), 255, np.uint8)])).save(folder / "rgba.png")
    sixteen = np.full((70, 80), 50000, np.uint16)
    sixteen[5:15, 5:15] = 1000  # stretched to black, but a small region: a rock, not sky
    Image.fromarray(sixteen).save(folder / "deep16.png")
    Image.fromarray(sixteen).save(folder / "deep16.tif")
    rotated = Image.fromarray(draw_rocks(80, 70, [(5, 5, 15, 15)]))
    exif = rotated.getexif()
    exif[0x0112] = 6  # stored sideways: viewers turn it 90° clockwise
    rotated.save(folder / "exif.jpg", exif=exif, quality=95)
    save(np.full((1, 1, 3), 200, np.uint8), folder / "tiny.png")
    # Headers of a descent-camera-sized frame (above Pillow's own 179 M-pixel guard, below ours)
    # and of an absurd one, each followed by too little data.
    (folder / "descent.png").write_bytes(png_header_only(16_000, 12_000))
    (folder / "oversize.png").write_bytes(png_header_only(25_000, 20_000))
    (folder / "absurd.png").write_bytes(png_header_only(40_000, 40_000))
    return folder


def png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_bad_inputs_are_recorded_and_the_batch_continues(tmp_path, oracle, capsys):
    inputs = make_bad_inputs(tmp_path / "in")
    out = tmp_path / "out"
    # Decoding in a worker process: failures and metadata travel back with the tiles.
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs), "--workers", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    reasons = {f["image"].rsplit(".", 1)[0]: f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"corrupt", "truncated", "notes", "empty", "descent", "oversize", "absurd"}
    assert "cannot decode" in reasons["truncated"] or "truncated" in reasons["truncated"]
    assert "bomb" not in reasons["descent"] and "truncated" in reasons["descent"]
    assert "25000x20000 exceeds the 400,000,000-pixel limit" in reasons["oversize"]
    assert reasons["absurd"] == "image exceeds the 400,000,000-pixel limit"  # past Pillow's guard too
    assert all(reason and "\n" not in reason for reason in reasons.values())
    assert summary["done"] == 7
    for good in ("good.png", "gray.png", "rgba.png", "deep16.png", "deep16.tif", "exif.jpg"):
        rows = read_catalog_csv(out / "catalogs" / f"{good}.csv")
        assert len(rows) == 1, good
    assert "stretched" in " ".join(summary["notes"]["deep16.png"])
    assert "exif_orientation=6" in summary["notes"]["exif.jpg"]
    exif_rock = read_catalog_csv(out / "catalogs" / "exif.jpg.csv")[0]
    assert exif_rock["width_px"] == 10 and exif_rock["x_min"] == 55  # turned upright before detection
    assert read_catalog_csv(out / "catalogs" / "tiny.png.csv") == []
    printed = capsys.readouterr()
    assert "failed: corrupt" in printed.out
    # progress is counted in images, failures included, with the total known from the start
    assert re.search(r"Predicting: 14/14 images \(100%\), .*failed 7", printed.err)


@pytest.mark.parametrize("option, message", [(["--tile", "0"], "--tile: must be at least 32, got 0"),
                                             (["--overlap", "1"], r"--overlap: must be less than 1.0, got 1.0"),
                                             (["--format", "csv"], "include json")])
def test_bad_predict_options_are_one_line(tmp_path, oracle, capsys, option, message):
    save(draw_rocks(10, 10, []), tmp_path / "a.png")
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(tmp_path / "o"), str(tmp_path / "a.png"),
                 *option]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1


def test_no_input_or_bad_checkpoint_exit_non_zero(tmp_path, capsys):
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(tmp_path / "o"), str(tmp_path / "none")]) == 2
    assert "input not found" in capsys.readouterr().err  # before any model is loaded
    save(draw_rocks(10, 10, []), tmp_path / "a.png")
    assert main(["predict", "--checkpoint", str(tmp_path / "m.ckpt"), "--out", str(tmp_path / "o"),
                 str(tmp_path / "a.png")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err


def test_interrupted_run_loses_nothing_and_rerun_redoes_only_the_rest(tmp_path, oracle, monkeypatch):
    inputs = write_batch(tmp_path / "in", count=5)
    out = tmp_path / "out"
    import rockdet.predict.lightning_run as batch

    real_write = batch.write_catalog
    written = []

    class Killed(BaseException):
        """What a kill looks like to Python (as KeyboardInterrupt): no image's own failure."""

    def write_then_die(catalog, paths, formats):
        if len(written) == 2:
            raise Killed("killed")  # the job dies here, mid-batch
        written.append(paths)
        return real_write(catalog, paths, formats)

    monkeypatch.setattr(batch, "write_catalog", write_then_die)
    with pytest.raises(Killed, match="killed"):
        main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs), "--tile", "64"])
    assert len(list(out.rglob("*.json"))) == 2
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    # A catalog cut off by a crash of an older writer is not trusted.
    (out / "catalogs" / "sub" / "img4.png.json").write_text('{"complete": tr')
    monkeypatch.setattr(batch, "write_catalog", real_write)
    oracle.calls.clear()
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs), "--tile", "64"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["skipped"]) == (3, 2)
    assert sum(oracle.calls) == 3 * 9  # only the three unfinished images went through the model
    assert summary["rocks_total"] == 1 + 2 + 3 + 1 + 2
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs), "--tile", "64",
                 "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["done"] == 5


def test_catalogs_made_with_other_settings_are_redone_not_kept(tmp_path, oracle, capsys):
    inputs = write_batch(tmp_path / "in", count=3)
    out = tmp_path / "out"
    checkpoint = tmp_path / "m.ckpt"
    checkpoint.write_bytes(b"first weights")
    command = ["predict", "--checkpoint", str(checkpoint), "--out", str(out), str(inputs), "--tile", "64"]
    assert main(command) == 0
    assert main(command) == 0  # the same command: nothing to redo
    assert json.loads((out / "summary.json").read_text())["skipped"] == 3
    # Every rock of the oracle scores 0.9: above 0.95 none is left, in every catalog of the batch.
    for changed, rocks in ((command + ["--score-threshold", "0.95"], 0), (command + ["--overlap", "0.3"], 6)):
        assert main(changed) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["done"], summary["skipped"], summary["redone_made_otherwise"]) == (3, 0, 3)
        assert summary["rocks_total"] == rocks
    checkpoint.write_bytes(b"retrained weights")  # same path, new model
    oracle.calls.clear()
    assert main(command) == 0
    assert json.loads((out / "summary.json").read_text())["done"] == 3 and sum(oracle.calls) == 3 * 9
    assert "made from another image, checkpoint or settings" in capsys.readouterr().err


def test_inputs_from_globs_and_list_files(tmp_path, oracle):
    write_batch(tmp_path / "in", count=3)
    listing = tmp_path / "list.txt"
    listing.write_text("in/sub/img0.png\n# a comment\nin/sub/missing.png\n")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(listing),
                 str(tmp_path / "in" / "**" / "img[12].png")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 3 and summary["failures"] == [{"image": "missing.png", "reason": "image file not found"}]
    assert (out / "catalogs" / "img0.png.json").is_file() and (out / "catalogs" / "sub" / "img2.png.json").is_file()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from rockdet.atomic import write_json_atomic

    target = tmp_path / "catalog.json"
    write_json_atomic(target, {"rocks": 1})
    class Unprintable:
        def __str__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_json_atomic(target, {"bad": Unprintable()})
    assert json.loads(target.read_text()) == {"rocks": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.json"]


def test_camera_fills_metric_columns_and_batch_sfd(tmp_path, oracle):
    camera = tmp_path / "nadir.yaml"
    camera.write_text("model: nadir\nimage_width: 130\nimage_height: 120\ngsd_m: 0.05\n")
    inputs = write_batch(tmp_path / "in", count=3)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs), "--camera", str(camera)]) == 0
    rows = read_catalog_csv(out / "catalogs" / "sub" / "img0.png.csv")
    assert list(rows[0])[-7:] == ["ground_x_m", "ground_y_m", "height_m", "size_flag", "site_x_m", "site_y_m", "site_z_m"]
    (rock,) = rows
    assert rock["diameter_m"] == pytest.approx(15 * 0.05) and rock["size_flag"] == "ok"
    assert rock["ground_x_m"] == pytest.approx((15 - 65) * 0.05)
    document = json.loads((out / "catalogs" / "sub" / "img0.png.json").read_text())
    assert document["camera"]["gsd_m"] == 0.05 and document["ground_area_m2"] == pytest.approx(130 * 120 * 0.0025)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sfd"]["rocks"] == 6 and summary["sfd"]["rocks_used"] == 5  # the 3.5 px rock is below the cut-off
    assert summary["sfd"]["completeness_m"] <= 0.75 and summary["sfd"]["status"] == "ok"
    assert (out / "sfd.json").is_file() and (out / "sfd.png").is_file()


def test_camera_of_another_aspect_flags_rocks_instead_of_guessing(tmp_path, oracle):
    camera = tmp_path / "wide.yaml"
    camera.write_text("image_width: 400\nimage_height: 100\nhfov_deg: 60\nheight_m: 1.5\npitch_deg: 20\n")
    inputs = write_batch(tmp_path / "in", count=1)
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(tmp_path / "out"), str(inputs),
                 "--camera", str(camera)]) == 0
    (rock,) = read_catalog_csv(tmp_path / "out" / "catalogs" / "sub" / "img0.png.csv")
    assert rock["size_flag"] == "image_size_mismatch" and rock["diameter_m"] is None


def test_a_failed_write_is_recorded_and_the_batch_continues(tmp_path, oracle, monkeypatch):
    import rockdet.predict.lightning_run as batch

    inputs = write_batch(tmp_path / "in", count=3)
    real_write = batch.write_catalog

    def full_disk_for_img1(catalog, paths, formats):
        if paths("csv").name == "img1.png.csv":
            raise OSError(28, "No space left on device")
        return real_write(catalog, paths, formats)

    monkeypatch.setattr(batch, "write_catalog", full_disk_for_img1)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (2, 1)
    assert "No space left on device" in summary["failures"][0]["reason"]


class TileSizedDetector(DarkBlobDetector):
    """Finds rocks only in inputs no larger than the 64 px it was 'trained' on, as a detector
    trained on crops misses rocks when a whole large image is shrunk into its input."""

    def forward(self, images):
        found = super().forward(images)
        return [out if max(image.shape[-2:]) <= 64 else {k: v[:0] for k, v in out.items()}
                for image, out in zip(images, found)]


def test_validation_tiles_and_merges_exactly_as_predict(tmp_path, monkeypatch):
    from rockdet.evaluation.metrics import DetectionMetrics
    from rockdet.training.task import RockDetectionTask

    inputs = write_batch(tmp_path / "in", count=3)
    model = TileSizedDetector()
    use_model(monkeypatch, model, oracle_info(input_size=64))
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs),
                 "--score-threshold", "0"]) == 0
    task = RockDetectionTask(model={"arch": "fasterrcnn_mobilenet_v3_large_fpn", "min_size": 64,
                                    "max_size": 64, "detections_per_image": 300},
                             optimizer={}, scheduler={}, evaluation={"score_threshold": 0.5},
                             input_size=64)
    task.model = model
    images = [torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255
              for p in sorted((inputs / "sub").glob("*.png"))]
    targets = [{"boxes": torch.tensor(ROCKS[: i % 3 + 1], dtype=torch.float32),
                "labels": torch.ones(i % 3 + 1, dtype=torch.int64)} for i in range(3)]
    task.validation_step((images, targets), 0)
    assert task.val_metrics.compute().scalars["recall_50"] == 1.0
    plain = DetectionMetrics()
    plain.update(model(images), targets)  # whole images in one pass: the tile-trained model sees nothing
    assert plain.compute().scalars["recall_50"] == 0.0
    for i, image in enumerate(sorted((inputs / "sub").glob("*.png"))):
        rows = read_catalog_csv(out / "catalogs" / "sub" / f"{image.name}.csv")
        (validated,) = task.val_metrics.coco.detection_box[i:i + 1]  # kept as x, y, w, h
        validated[:, 2:] += validated[:, :2]
        assert sorted(map(tuple, validated.tolist())) == \
            sorted((r["x_min"], r["y_min"], r["x_max"], r["y_max"]) for r in rows)
