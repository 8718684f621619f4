"""``eval.score_threshold: auto`` picks the operating point on the validation split, stores it
in the checkpoint, and predict uses the stored value; mixed training splits read several sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_train_overrides
from oracle import draw_rocks, save

from rockdet.cli.main import main
from rockdet.evaluation.operating_point import ValidationImage, ValidationSource, choose_threshold
from rockdet.evaluation.quality import RockMask
from rockdet.predict.detect import RawTiles
from rockdet.training.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def image_with(scores: list[float], right: list[int], rocks: int, mask: np.ndarray | None = None,
               crowd_at: tuple[int, ...] = ()) -> ValidationImage:
    """One 2000x400 image whose detector returns one 10-px box per score, in a row: a right one
    on a labelled rock, a wrong one on bare ground, those in ``crowd_at`` on a crowd region."""
    boxes = [(20.0 * i, 200.0, 20.0 * i + 10, 210.0) for i in range(len(scores))]
    truth = [box for box, ok in zip(boxes, right) if ok == 1]
    truth += [(20.0 * (40 + i), 300.0, 20.0 * (40 + i) + 10, 310.0) for i in range(rocks - len(truth))]  # missed
    crowd = np.array([boxes[i] for i in crowd_at], dtype=float).reshape(-1, 4)
    raw = RawTiles([{"boxes": torch.tensor(boxes).reshape(-1, 4), "scores": torch.tensor(scores),
                     "labels": torch.ones(len(scores), dtype=torch.int64)}], [(0, 0, 2000, 400)])
    return ValidationImage(raw, np.array(truth, dtype=float).reshape(-1, 4), crowd,
                           None if mask is None else RockMask(mask))


def test_auto_picks_the_best_f1_threshold_on_dense_labels():
    # 4 rocks; by score: right, right, wrong, right, wrong, wrong.
    # Cut after the 4th detection: P 3/4, R 3/4, F1 0.75, the best (after the 2nd: 1, 0.5, 0.667).
    image = image_with([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0], rocks=4)
    choice = choose_threshold([ValidationSource("mars", True, [image])], recall_target=0.6, fallback=0.5)
    assert choice.rule.startswith("best_f1") and choice.measure == "box precision/recall"
    assert choice.score_threshold == pytest.approx(0.6)
    assert (choice.precision, choice.recall, choice.f1) == pytest.approx((0.75, 0.75, 0.75))


def test_auto_on_sparse_labels_keeps_the_recall_target_and_dense_sources_win():
    sparse = ValidationSource("change", False, [image_with([0.9, 0.5, 0.3, 0.2], [1, 0, 1, 1], rocks=4)])
    choice = choose_threshold([sparse], recall_target=0.5, fallback=0.5)
    assert choice.rule.startswith("recall_target") and choice.score_threshold == pytest.approx(0.3)
    missed = choose_threshold([sparse], recall_target=0.99, fallback=0.5)
    assert missed.score_threshold == pytest.approx(0.2) and "not reached" in missed.note
    dense = ValidationSource("mars", True, [image_with([0.7, 0.1], [1, 0], rocks=1)])
    assert choose_threshold([sparse, dense], 0.5, 0.5).sources == ["mars"]


def test_crowd_detections_are_neither_right_nor_wrong_for_the_choice():
    image = image_with([0.9, 0.8, 0.7], [1, 0, 1], rocks=2, crowd_at=(1,))
    choice = choose_threshold([ValidationSource("mars", True, [image])], 0.6, 0.5)
    assert choice.precision == pytest.approx(1.0) and choice.score_threshold == pytest.approx(0.7)


def test_with_dense_masks_the_choice_is_by_mask_precision_and_recall():
    # Rock pixels under the first and third boxes only; the (empty) box labels would call all wrong.
    mask = np.zeros((400, 2000), dtype=bool)
    mask[200:210, 0:10] = mask[200:210, 40:50] = True
    image = image_with([0.9, 0.8, 0.7, 0.2], [0, 0, 0, 0], rocks=0, mask=mask)
    choice = choose_threshold([ValidationSource("mars", True, [image])], 0.6, 0.5)
    assert choice.measure == "mask precision/recall"
    # At 0.7: 2 of 3 boxes on rock and both components found (F1 0.8); at 0.9: P 1, R 0.5.
    assert choice.score_threshold == pytest.approx(0.7)
    assert (choice.precision, choice.recall) == pytest.approx((2 / 3, 1.0))


def test_each_threshold_is_judged_on_the_catalog_predict_writes_there():
    # A rock cut by the border of two overlapping tiles: a confident part in the left tile, a
    # weak, too long part in the right one. Merged at 0.01 they are one union box that misses
    # the rock at IoU 0.5; predict at 0.5 never sees the weak part and keeps the right box.
    left = {"boxes": torch.tensor([[10.0, 10.0, 64.0, 40.0]]), "scores": torch.tensor([0.9]),
            "labels": torch.ones(1, dtype=torch.int64)}
    right = {"boxes": torch.tensor([[0.0, 10.0, 64.0, 40.0]]), "scores": torch.tensor([0.1]),
             "labels": torch.ones(1, dtype=torch.int64)}
    image = ValidationImage(RawTiles([left, right], [(0, 0, 64, 64), (32, 0, 96, 64)]),
                            np.array([[10.0, 10.0, 50.0, 40.0]]))
    assert image.counts(0.01, 0.5, by_mask=False)[:3] == (0, 1, 0)
    assert image.counts(0.5, 0.5, by_mask=False)[:3] == (1, 1, 1)


@pytest.mark.slow
def test_auto_threshold_is_stored_in_the_checkpoint_and_predict_uses_it(synthetic_data, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = tiny_train_overrides(synthetic_data, run, **{"eval.score_threshold": "auto",
                                                              "trainer.max_steps": 2})
    # Two readers in one training split: the COCO set and a binary mask folder, weighted.
    masks_source = write_mask_folder(tmp_path / "mask_set")
    config = tmp_path / "mixed.yaml"
    config.write_text(f"extends: {ROOT / 'configs' / 'tiny_cpu.yaml'}\n"
                      f"data:\n  train:\n    - {{annotations: {synthetic_data['train']}}}\n"
                      f"    - {{format: masks, images: {masks_source / 'images'}, masks: {masks_source / 'masks'},"
                      f" mask_mode: binary, weight: 2}}\n"
                      f"  val: [{{annotations: {synthetic_data['val']}, dense: true}}]\n")
    overrides = [o for o in overrides if not o.startswith(("data.train.", "data.val."))]
    assert main(["train", "--config", str(config), *overrides]) == 0
    assert "operating point of last.ckpt" in capsys.readouterr().out
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["evaluation"]
    threshold = saved["score_threshold"]
    assert isinstance(threshold, float) and 0.0 <= threshold <= 1.0
    assert saved["threshold_choice"]["rule"] in ("best_f1 (dense labels)", "fallback")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["operating_points"]["last.ckpt"]["score_threshold"] == threshold
    out = tmp_path / "out"
    image = Path(synthetic_data["val"]).parent
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--out", str(out), str(image)]) == 0
    catalog = next((out / "catalogs").glob("*.json"))
    assert json.loads(catalog.read_text())["score_threshold"] == threshold


def write_mask_folder(root: Path) -> Path:
    """Two 96-px scenes of dark rocks on bright ground with binary rock masks."""
    for number in range(2):
        pixels = draw_rocks(96, 96, [(10 + 20 * number, 10, 30 + 20 * number, 28), (50, 60, 70, 84)])
        save(pixels, root / "images" / f"scene{number}.png")
        save(((pixels[:, :, 0] < 100) * 255).astype(np.uint8), root / "masks" / f"scene{number}.png")
    return root


def test_a_mixed_split_reads_each_source_with_its_own_reader_and_weight(synthetic_data, tmp_path):
    from rockdet.training.datamodule import RockDataModule

    masks_source = write_mask_folder(tmp_path / "mask_set")
    config = tmp_path / "mixed.yaml"
    config.write_text(f"extends: {ROOT / 'configs' / 'tiny_cpu.yaml'}\n"
                      f"data:\n  train:\n    - {{annotations: {synthetic_data['train']}}}\n"
                      f"    - {{format: masks, images: {masks_source / 'images'}, masks: {masks_source / 'masks'},"
                      f" mask_mode: binary, weight: 3}}\n")
    data = load_config(config, [f"data.val.annotations={synthetic_data['val']}"]).data
    module = RockDataModule(data)
    module.setup("fit")
    assert len(module.train_set) == 6 + 2 and len(module.train_records) == 8
    image, target = module.train_set[7]  # the mask folder's second scene
    assert image.shape[1:] == (96, 96) and len(target["boxes"]) == 2
    weights = list(module.train_dataloader().sampler.weights)
    assert weights == [1.0] * 6 + [3.0] * 2


def test_an_image_list_picks_images_of_a_source(synthetic_data, tmp_path):
    from rockdet.data.settings import SplitConfig
    from rockdet.data.sources import load_source
    from rockdet.errors import DataError

    names = [image["file_name"] for image in json.loads(Path(synthetic_data["train"]).read_text())["images"]]
    listing = tmp_path / "half.txt"
    listing.write_text("# the first two\n" + "\n".join(names[:2]) + "\n")
    loaded = load_source(SplitConfig(annotations=synthetic_data["train"], image_list=listing), ["rock"])
    assert [r.path.name for r in loaded.records] == [Path(n).name for n in names[:2]]
    listing.write_text("nowhere.png\n")
    with pytest.raises(DataError, match="half.txt: 1 listed image"):
        load_source(SplitConfig(annotations=synthetic_data["train"], image_list=listing), ["rock"])


def test_a_list_of_sources_must_not_be_empty(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"extends: {ROOT / 'configs' / 'tiny_cpu.yaml'}\ndata: {{train: []}}\n")
    with pytest.raises(Exception, match="data.train"):
        load_config(config, [])
