"""What a non-interactive run prints: few progress redraws, no library tips or known-harmless
warnings, and the --quiet / --verbose levels. Run as a user runs it (a separate process writing to
a pipe, as into a log file), since pytest would catch warnings and log records itself."""

import re
import subprocess
import sys

import torch
from oracle import draw_rocks, save

from rockdet.models import build_detector


def run_rockdet(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rockdet.cli.main", *arguments], capture_output=True, text=True)


def tiny_checkpoint(path):
    torch.manual_seed(0)
    settings = {"arch": "fasterrcnn_mobilenet_v3_large_fpn", "min_size": 64, "max_size": 64}
    model = build_detector(**settings)
    torch.save({"hyper_parameters": {"model": settings, "input_size": 64, "evaluation": {"score_threshold": 0.5}},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def test_a_50_image_batch_logged_to_a_file_holds_few_redraws_and_no_library_chatter(tmp_path):
    for i in range(50):
        save(draw_rocks(64, 48, [(10, 10, 20 + i % 5, 20)]), tmp_path / "in" / f"{i:02d}.png")
    checkpoint = tiny_checkpoint(tmp_path / "m.ckpt")
    done = run_rockdet("predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
                       str(tmp_path / "in"), "--batch-size", "1", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    assert len(re.findall(r"Predicting:", printed)) <= 3
    for chatter in ("litlogger", "LitLogger", "LeafSpec", "Couldn't infer the batch indices"):
        assert chatter not in printed
    quiet = run_rockdet("--quiet", "predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "q"),
                        str(tmp_path / "in" / "00.png"), "--device", "cpu")
    assert quiet.returncode == 0 and "INFO" not in quiet.stderr
    verbose = run_rockdet("--verbose", "predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "v"),
                          str(tmp_path / "in" / "00.png"), "--device", "cpu")
    assert verbose.returncode == 0 and "INFO rockdet" in verbose.stderr
