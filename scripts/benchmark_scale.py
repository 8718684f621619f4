"""How a batch's cost grows with its number of images (issue 21): `rockdet predict` with a tiny
model on 64-px images at each size given, each run in a process of its own.

For each size it records seconds per image, the run's peak RSS, the size of ``--out``, and the
time of a resume with nothing left to do (every catalog kept). With ``--profile N`` it also runs
N images in this process under cProfile and prints where the time outside the model went
(thumbnails, catalog writes, journal, hashing, batch files...).

    python scripts/benchmark_scale.py --sizes 100 1000 --work /tmp/scale
    python scripts/benchmark_scale.py --sizes 100 1000 10000 100000 --work /scratch/scale
    python scripts/benchmark_scale.py --sizes 200 --profile 200 --work /tmp/scale
    python scripts/benchmark_scale.py --sizes 10000 --work /tmp/scale --resume-baseline /tmp/baseline/src

The model is random (speed only); its score threshold is 0.3 so that catalogs hold a few rocks.
Inputs and outputs are kept under --work (100,000 images: about 0.6 GB of inputs).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rockdet.models import build_detector

IMAGE_SIDE = 64
TINY_MODEL = {"arch": "fasterrcnn_mobilenet_v3_large_fpn", "min_size": IMAGE_SIDE, "max_size": IMAGE_SIDE}
SCORE_THRESHOLD = 0.3
#: Functions whose time is the model's (forward passes), not the pipeline's.
MODEL_FUNCTIONS = ("run_model", "_call_impl")


def write_model(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_detector(**TINY_MODEL)
    torch.save({"hyper_parameters": {"model": TINY_MODEL, "input_size": IMAGE_SIDE,
                                     "evaluation": {"score_threshold": SCORE_THRESHOLD}},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def write_images(folder: Path, count: int) -> Path:
    """``count`` terrain-like 64-px PNGs, 1,000 to a subfolder (as archives are laid out)."""
    rng = np.random.default_rng(0)
    existing = sum(1 for _ in folder.rglob("*.png")) if folder.is_dir() else 0
    for index in range(existing, count):
        pixels = rng.normal(120, 25, (IMAGE_SIDE, IMAGE_SIDE, 1)).clip(0, 255).astype(np.uint8).repeat(3, axis=2)
        path = folder / f"{index // 1000:04d}" / f"img{index:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Renamed into place: an interrupted run leaves no empty image for the next to count.
        Image.fromarray(pixels).save(path.with_suffix(".tmp"), format="PNG")
        os.replace(path.with_suffix(".tmp"), path)
    return folder


def run_predict(model: Path, images: Path, out: Path, source: Path | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one `rockdet predict` process (of the rockdet in ``source``,
    a ``src`` folder, if given)."""
    env = dict(os.environ, PYTHONPATH=str(source)) if source is not None else None
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "rockdet.cli.main", "--quiet", "predict", "--checkpoint",
                                str(model), "--out", str(out), str(images), "--device", "cpu"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict failed: {process.stderr.read()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # kB on Linux


def folder_mib(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def measure(model: Path, work: Path, size: int) -> dict:
    images = write_images(work / "images" / str(size), size)
    out = work / f"out_{size}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    seconds, rss = run_predict(model, images, out)
    summary = json.loads((out / "summary.json").read_text())
    if summary["done"] != size:
        raise SystemExit(f"{size} images: only {summary['done']} catalogued ({summary['failures'][:3]})")
    out_mib = folder_mib(out)
    resume_seconds, resume_rss = run_predict(model, images, out)
    resumed = json.loads((out / "summary.json").read_text())
    if resumed["skipped"] != size:
        raise SystemExit(f"{size} images: the resume redid {resumed['done']}")
    return {"images": size, "seconds": round(seconds, 1), "seconds_per_image": round(seconds / size, 4),
            "peak_rss_mib": round(rss), "out_mib": round(out_mib, 1), "rocks": summary["rocks_total"],
            "noop_resume_seconds": round(resume_seconds, 1), "noop_resume_peak_rss_mib": round(resume_rss),
            "resume_kept_by_file_times": resumed.get("kept_by_file_times")}


def compare_resumes(model: Path, work: Path, size: int, baseline: Path, rounds: int) -> None:
    """No-op resumes of the same finished batch, side by side: the baseline rockdet's, then this
    tree's twice (the first rebuilds the batch files the baseline rewrote, the second finds them
    as they were built and keeps them). ``rounds`` times, alternating."""
    images, out = work / "images" / str(size), work / f"out_{size}"
    print(f"\nno-op resumes of {size} images, side by side (baseline: {baseline})")
    print("| round | baseline s | this tree s (rebuilding the batch files) | this tree s (keeping them) |")
    print("|---|---|---|---|")
    for number in range(1, rounds + 1):
        base, _ = run_predict(model, images, out, baseline)
        rebuilt, _ = run_predict(model, images, out)
        kept, _ = run_predict(model, images, out)
        print(f"| {number} | {base:.1f} | {rebuilt:.1f} | {kept:.1f} |", flush=True)


def profile(model: Path, work: Path, count: int) -> None:
    """Where one in-process run of ``count`` images spends its time, the model apart."""
    from rockdet.cli.main import main

    images = write_images(work / "images" / f"profile_{count}", count)
    out = work / f"profile_out_{count}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(main, ["--quiet", "predict", "--checkpoint", str(model), "--out", str(out), str(images),
                            "--device", "cpu"])
    total = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    by_name = {}
    for (_, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        by_name.setdefault(name, 0.0)
        by_name[name] = max(by_name[name], cumulative)
    model_seconds = by_name.get("run_model", 0.0)
    print(f"\nprofile of {count} images in one process: {total:.1f} s, {1000 * total / count:.1f} ms/image; "
          f"model forward (run_model) {1000 * model_seconds / count:.1f} ms/image, everything else "
          f"{1000 * (total - model_seconds) / count:.1f} ms/image")
    interesting = ["read_image", "shrink_for_thumbnail", "write_thumbnail", "write_catalog", "file_stamps",
                   "file_sha256", "product_files", "catalog_of", "merge_tiles", "tile_batches", "record",
                   "plan_batch", "collect_inputs", "refuse_overwriting", "finish_batch", "_write_batch",
                   "read_catalog_json", "write_batch_sfd", "load", "_run_stage", "fit_inference_form"]
    for name in interesting:
        if name in by_name:
            print(f"  {name:24s} {by_name[name]:7.2f} s  {1000 * by_name[name] / count:6.2f} ms/image")
    stats.sort_stats("cumulative").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--work", type=Path, required=True, help="folder for the inputs and outputs")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="also profile N images in-process")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    parser.add_argument("--resume-baseline", type=Path, metavar="SRC",
                        help="also time no-op resumes of each size side by side with the rockdet in SRC (a src folder)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --resume-baseline (default 2)")
    options = parser.parse_args()
    options.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = write_model(options.work / "tiny.ckpt")
    rows = []
    print("| images | s | s/image | peak RSS MiB | --out MiB | rocks | no-op resume s | resume RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for size in options.sizes:
        row = measure(model, options.work, size)
        rows.append(row)
        print(f"| {row['images']} | {row['seconds']} | {row['seconds_per_image']} | {row['peak_rss_mib']} | "
              f"{row['out_mib']} | {row['rocks']} | {row['noop_resume_seconds']} | {row['noop_resume_peak_rss_mib']} |",
              flush=True)
    if options.json:
        options.json.write_text(json.dumps(rows, indent=1))
    if options.resume_baseline:
        for size in options.sizes:
            compare_resumes(model, options.work, size, options.resume_baseline, options.rounds)
    if options.profile:
        profile(model, options.work, options.profile)
    print(f"(children's CPU time: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime:.0f} s)")


if __name__ == "__main__":
    main()
