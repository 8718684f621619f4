"""What a non-interactive run prints: plain progress lines (rate, ETA, latest figures) instead of
a redrawn bar, no library tips or known-harmless warnings, and the --quiet / --verbose levels.
Run as a user runs it (a separate process writing to a pipe, as into a log file), since pytest
would catch warnings and log records itself."""

import io
import re
import subprocess
import sys
from pathlib import Path

from conftest import tiny_train_overrides
from oracle import draw_rocks, save, tiny_checkpoint

from rockdet.progress import ProgressLines

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def run_rockdet(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rockdet.cli.main", *arguments], capture_output=True, text=True)


def test_a_50_image_batch_logged_to_a_file_prints_plain_progress_lines_and_no_library_chatter(tmp_path):
    for i in range(50):
        save(draw_rocks(64, 48, [(10, 10, 20 + i % 5, 20)]), tmp_path / "in" / f"{i:02d}.png")
    checkpoint = tiny_checkpoint(tmp_path / "m.ckpt")
    done = run_rockdet("predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
                       str(tmp_path / "in"), "--batch-size", "1", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    lines = [line for line in printed.splitlines() if line.startswith("Predicting:")]
    assert "\r" not in printed and 1 <= len(lines) <= 11, printed
    assert re.fullmatch(r"Predicting: 50/50 images \(100%\), .* so far, rocks \d+, failed 0", lines[-1]), lines
    for chatter in ("litlogger", "LitLogger", "LeafSpec", "Couldn't infer the batch indices"):
        assert chatter not in printed
    quiet = run_rockdet("--quiet", "predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "q"),
                        str(tmp_path / "in" / "00.png"), "--device", "cpu")
    assert quiet.returncode == 0 and "INFO" not in quiet.stderr
    verbose = run_rockdet("--verbose", "predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "v"),
                          str(tmp_path / "in" / "00.png"), "--device", "cpu")
    assert verbose.returncode == 0 and "INFO rockdet" in verbose.stderr


def test_training_logged_to_a_file_prints_epoch_lines_with_loss_and_the_validation_figures(synthetic_data, tmp_path):
    with open(tmp_path / "train.log", "w") as log:  # as under SLURM or nohup
        done = subprocess.run([sys.executable, "-m", "rockdet.cli.main", "train", "--config",
                               str(CONFIGS / "tiny_cpu.yaml"),
                               *tiny_train_overrides(synthetic_data, tmp_path / "run", **{
                                   "data.batch_size": 1, "trainer.enable_progress_bar": "true"})],
                              stdout=log, stderr=subprocess.STDOUT, text=True)
    printed = (tmp_path / "train.log").read_text()
    assert done.returncode == 0, printed
    assert "\r" not in printed and "Epoch 0:" not in printed  # no redrawn bar
    assert re.search(r"^epoch 0: 6/6 steps \(100%\), .* so far, loss [0-9.]+$", printed, re.M), printed
    assert re.search(r"^validation after epoch 0: 3/3 batches \(100%\)", printed, re.M), printed
    assert re.search(r"^validation after epoch 0: .*val_map_50 [0-9.]+", printed, re.M), printed


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_come_every_tenth_or_every_minute_and_always_at_the_end():
    clock, out = FakeClock(), io.StringIO()
    lines = ProgressLines("epoch 3", 1000, "step", stream=out, clock=clock)
    for _ in range(1000):  # 12 s a step: a tenth takes 20 minutes, so a line every minute
        clock.now += 12
        lines.update(1, loss=0.5)
    printed = out.getvalue().splitlines()
    assert printed[0] == "epoch 3: 5/1000 steps (0%), 12 s/step, ETA 3h19m, 1m00s so far, loss 0.5"
    assert len(printed) == 200 and printed[-1].startswith("epoch 3: 1000/1000 steps (100%), 12 s/step, 3h20m")

    clock, out = FakeClock(), io.StringIO()
    lines = ProgressLines("Predicting", 1000, "image", stream=out, clock=clock)
    for step in range(999):  # 0.1 s an image: a tenth takes 10 s, so a line every tenth
        clock.now += 0.1
        lines.update(1, rocks=step)
    lines.close()  # the last line even when the count falls short of the total
    printed = out.getvalue().splitlines()
    assert [line.split(" images")[0] for line in printed] == [f"Predicting: {n}/1000" for n in
                                                              (100, 200, 300, 400, 500, 600, 700, 800, 900, 999)]
    assert printed[0] == "Predicting: 100/1000 images (10%), 10 images/s, ETA 1m30s, 10s so far, rocks 99"
