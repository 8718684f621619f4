"""`make demo`: synthetic data → train a tiny detector on CPU → evaluate against an untrained one
→ predict rock catalogs. Everything is made here; nothing is downloaded."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from rockdet.cli.main import main as rockdet
from rockdet.data.dataset import RockDataset
from rockdet.data.formats import load_split
from rockdet.evaluation.evaluate import evaluate_model
from rockdet.models import build_detector, load_model
from rockdet.training.config import SplitConfig

ROOT = Path(__file__).resolve().parent.parent
#: The trained model must beat the untrained one by this factor in recall at IoU 0.5.
REQUIRED_GAIN = 2.0


def run(step: str, args: list[str]) -> None:
    print(f"\n=== {step}: rockdet {' '.join(args)}", flush=True)
    if rockdet(args) != 0:
        sys.exit(f"demo failed at step '{step}'")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "demo_out")
    parser.add_argument("--epochs", type=int, default=None, help="override the tiny config's epochs")
    options = parser.parse_args()
    out = options.out.resolve()
    started = time.monotonic()
    data, run_dir = out / "data", out / "run"
    run("make data", ["synth", "--out", str(data), "--train", "48", "--val", "16", "--seed", "0"])
    overrides = [f"data.train.annotations={data / 'train' / 'annotations.json'}",
                 f"data.val.annotations={data / 'val' / 'annotations.json'}", f"run.dir={run_dir}"]
    if options.epochs:
        overrides.append(f"trainer.max_epochs={options.epochs}")
    run("train", ["train", "--config", str(ROOT / "configs" / "tiny_cpu.yaml"), *overrides])
    best = run_dir / "checkpoints" / "best.ckpt"
    run("evaluate", ["evaluate", "--checkpoint", str(best), "--data",
                     str(data / "val" / "annotations.json"), "--out", str(run_dir / "eval.json")])
    trained, untrained = compare_with_untrained(best, data / "val" / "annotations.json")
    print("\n=== learning check (validation set, recall at IoU 0.5, up to the model's 300 detections/image)")
    print(f"untrained model: {untrained:.3f}   trained model: {trained:.3f}")
    if trained < max(REQUIRED_GAIN * untrained, untrained + 0.05):
        sys.exit("demo failed: the trained model is not clearly better than an untrained one")
    new_images = make_new_images(out / "new_images")
    predictions = out / "predictions"
    run("predict", ["predict", "--checkpoint", str(best), "--out", str(predictions), "--overlay",
                    str(new_images)])
    print(f"\nDone in {time.monotonic() - started:.0f} s. Look at:")
    print(f"  run folder:       {run_dir}  (metrics.csv, training_curves.png, checkpoints/)")
    print(f"  evaluation:       {run_dir / 'eval.json'}  and {run_dir / 'eval_pr.png'}")
    print(f"  rock catalogs:    {predictions / 'catalogs'}  (IMAGE.csv + IMAGE.json per image)")
    print(f"  overlays:         {predictions / 'overlays'}")
    print(f"  batch:            {predictions / 'rocks.csv'} (every rock), "
          f"{predictions / 'summary.json'} (done/failed images)")
    print(f"  report:           {predictions / 'report.html'}  (open it in a browser)")
    return 0


def make_new_images(folder: Path) -> Path:
    """Unseen scenes to catalogue: two larger than the training images (tiled automatically)
    and one deliberately corrupt file, to show how a broken image is recorded."""
    import numpy as np
    from PIL import Image

    from rockdet.synthetic.scenes import SceneSpec, generate_scene

    folder.mkdir(parents=True, exist_ok=True)
    for index, (width, height) in enumerate([(768, 512), (256, 256), (1024, 384)]):
        scene = generate_scene(np.random.default_rng([99, index]),
                               SceneSpec(width=width, height=height, empty_fraction=0.0))
        Image.fromarray(scene.image).save(folder / f"scene_{index}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this file was cut short")
    return folder


def compare_with_untrained(checkpoint: Path, annotations: Path) -> tuple[float, float]:
    model, info = load_model(checkpoint)
    records = load_split(SplitConfig(annotations=annotations), ["rock"]).records
    dataset = RockDataset(records)
    cap = info.detections_per_image
    trained = evaluate_model(model, dataset, max_detections=cap).scalars["recall_50"]
    torch.manual_seed(0)
    untrained = evaluate_model(build_detector(**info.build_arguments()), dataset, max_detections=cap).scalars["recall_50"]
    return trained, untrained


if __name__ == "__main__":
    sys.exit(main())
