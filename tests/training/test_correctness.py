"""Three bugs that silently distorted training and its figures, each pinned by a test:
augmentation streams repeated across DataLoader workers, metrics capped at 100 detections while
the model returns up to 300, and Parquet catalogs whose column types changed from file to file."""

import json
import shutil

import pytest
import torch
from conftest import write_coco

from rockdet.catalog.catalog import Catalog, write_catalog
from rockdet.catalog.rock import Rock
from rockdet.evaluation.metrics import DetectionMetrics
from rockdet.training.config import DataConfig, SplitConfig
from rockdet.training.datamodule import RockDataModule


def _same_image_many_times(synthetic_data, tmp_path, copies=8):
    """A training split of ``copies`` identical copies of one image (training refuses one file
    listed twice): any difference between samples is the augmentation's doing."""
    source = json.loads(synthetic_data["train"].read_text())
    image = dict(source["images"][0])
    annotations = [a for a in source["annotations"] if a["image_id"] == image["id"]]
    original = synthetic_data["train"].parent / image["file_name"]
    for i in range(copies):
        shutil.copyfile(original, tmp_path / f"copy_{i}.png")
    images = [{**image, "id": i, "file_name": f"copy_{i}.png"} for i in range(copies)]
    anns = [{**a, "id": 1000 * i + k, "image_id": i} for i in range(copies) for k, a in enumerate(annotations)]
    path = write_coco(tmp_path / "same_image.json", images, anns, source["categories"])
    return SplitConfig(annotations=path)


def _augmented_stream(split, seed):
    module = RockDataModule(DataConfig(train=split, val=split, rock_classes=["rock"], batch_size=1,
                                       num_workers=2), seed=seed)
    module.setup("fit")
    torch.manual_seed(seed)
    return [images[0] for images, _ in module.train_dataloader()]


def test_each_dataloader_worker_augments_differently_and_runs_repeat(synthetic_data, tmp_path):
    split = _same_image_many_times(synthetic_data, tmp_path)
    stream = _augmented_stream(split, seed=5)
    # Batches alternate between the two workers; with one shared random state, worker 1 would
    # repeat worker 0's augmentations sample for sample.
    pairs = [torch.equal(stream[i], stream[i + 1]) for i in range(0, len(stream), 2)]
    assert not all(pairs)
    again = _augmented_stream(split, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(stream, again))  # same seed and workers: same run


def test_recall_counts_rocks_found_beyond_the_hundredth_detection():
    truth = {"boxes": torch.tensor([[100.0, 100.0, 120.0, 120.0]]), "labels": torch.tensor([1])}
    # 150 detections per image, the one on the rock ranked 120th: a dense rock field's catalog.
    boxes = torch.tensor([[i * 3.0, 0.0, i * 3.0 + 2, 2.0] for i in range(150)])
    boxes[119] = truth["boxes"][0]
    scores = torch.linspace(0.99, 0.5, 150)
    prediction = {"boxes": boxes, "scores": scores, "labels": torch.ones(150, dtype=torch.int64)}
    for cap, expected in ((300, 1.0), (100, 0.0)):
        metrics = DetectionMetrics(score_threshold=0.0, max_detections=cap)
        metrics.update([prediction], [truth])
        assert metrics.compute().scalars["recall_50"] == pytest.approx(expected), cap


def test_parquet_catalogs_share_one_schema_and_read_as_one_dataset(tmp_path):
    ds = pytest.importorskip("pyarrow.dataset")
    import pyarrow as pa

    rocks = [Rock(1, 0.9, 1.0, 2.0, 11.0, 12.0, size_flag="ok"), Rock(2, 0.8, 5, 5, 9, 9)]
    catalogs = {"with_rocks": rocks, "no_rocks": [], "no_flags": [Rock(1, 0.7, 0, 0, 4, 4)]}
    for name, found in catalogs.items():
        write_catalog(Catalog(name, 16, 16, tuple(found), "0" * 64, with_geometry=True),
                      lambda fmt, name=name: tmp_path / f"{name}.{fmt}", ("parquet", "json"))
    table = ds.dataset(sorted(tmp_path.glob("*.parquet")), format="parquet").to_table()
    assert table.num_rows == 3
    assert table.schema.field("rock_id").type == pa.int64()
    assert table.schema.field("size_flag").type == pa.string()
    assert table.schema.field("x_min").type == pa.float64()
    assert sorted(table.column("x_min").to_pylist()) == [0.0, 1.0, 5.0]


def test_catalog_json_lists_one_rock_a_line_and_writes_non_finite_values_as_null(tmp_path):
    rocks = (Rock(1, 0.9, 1.0, 2.0, 11.0, 12.0, range_m=float("nan"), diameter_m=0.25),
             Rock(2, 0.8, 5, 5, 9, 9, range_m=float("inf")))
    paths = lambda fmt: tmp_path / f"frame.{fmt}"  # noqa: E731
    write_catalog(Catalog("frame.png", 16, 16, rocks, "0" * 64, context={"note": float("nan")}), paths, ("csv", "json"))
    text = paths("json").read_text()
    document = json.loads(text)  # strict JSON: Python's parser would also take NaN, so check the text too
    assert "NaN" not in text and "Infinity" not in text
    assert document["note"] is None and document["rock_count"] == 2
    assert [rock["range_m"] for rock in document["rocks"]] == [None, None]
    assert document["rocks"][0]["diameter_m"] == 0.25
    # A person opening the file sees the header keys and then one rock a line.
    rock_lines = [line for line in text.splitlines() if line.lstrip().startswith('{"rock_id"')]
    assert len(rock_lines) == 2
    empty = tmp_path / "empty"
    write_catalog(Catalog("empty.png", 16, 16, (), "0" * 64), lambda fmt: empty.with_suffix(f".{fmt}"), ("json",))
    assert json.loads(empty.with_suffix(".json").read_text())["rocks"] == []
