"""Runs across machines, as SLURM or torchrun start them: two "nodes" of one CPU process each on
this machine (gloo over localhost), each started by the test with the environment a cluster gives
(MASTER_ADDR/PORT, NODE_RANK, LOCAL_RANK, WORLD_SIZE and a run id every process shares)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_train_overrides
from oracle import draw_rocks, save, tiny_checkpoint

from rockdet.catalog.files import read_catalog_csv
from rockdet.io.layout import OutputLayout, hold_output_lock

pytestmark = pytest.mark.slow  # each test starts two or more rockdet processes

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL_ROCKS = [(5, 5, 20, 20), (30, 30, 50, 50), (10, 40, 25, 60)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cluster_environment(cluster: str, node: int, port: int) -> dict[str, str]:
    """What a cluster sets for the process of one machine: torchrun-style variables with a run id,
    or what `srun` sets (Lightning's SLURM environment; the job and step are the run id)."""
    if cluster == "slurm":
        environment = {key: value for key, value in os.environ.items() if key != "MASTER_ADDR"}
        return {**environment, "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": str(node),
                "SLURM_LOCALID": "0", "SLURM_NODEID": str(node), "SLURM_NODELIST": "localhost",
                "SLURM_JOB_ID": str(port), "SLURM_STEP_ID": "0", "SLURM_JOB_NAME": "rockdet"}
    return {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
            "NODE_RANK": str(node), "LOCAL_RANK": "0", "ROCKDET_RUN_ID": "job-42"}


def on_two_nodes(arguments: list[str], logs: Path, cluster: str = "env") -> list[subprocess.CompletedProcess]:
    """``rockdet ARGUMENTS`` as the two machines of one cluster job run it, side by side (output
    to files in ``logs``, as under SLURM)."""
    port = free_port()
    processes, outputs = [], []
    logs.mkdir(parents=True, exist_ok=True)
    for node in (0, 1):
        environment = cluster_environment(cluster, node, port)
        outputs.append((open(logs / f"node{node}.out", "w+"), open(logs / f"node{node}.err", "w+")))
        processes.append(subprocess.Popen([sys.executable, "-m", "rockdet.cli.main", *arguments], env=environment,
                                          stdout=outputs[-1][0], stderr=outputs[-1][1], text=True))
    deadline = time.monotonic() + 600
    # One node failing leaves the other waiting for it at the rendezvous: stop both then.
    while any(process.poll() is None for process in processes) and time.monotonic() < deadline:
        if any(process.poll() not in (None, 0) for process in processes):
            break
        time.sleep(0.2)
    for process in processes:
        if process.poll() is None:
            process.kill()
    results = []
    for process, (stdout, stderr) in zip(processes, outputs):
        code = process.wait()
        with stdout, stderr:
            results.append(subprocess.CompletedProcess(process.args, code, Path(stdout.name).read_text(),
                                                       Path(stderr.name).read_text()))
    return results


def write_inputs(folder: Path, count: int) -> Path:
    for i in range(count):
        save(draw_rocks(64, 64, SMALL_ROCKS[: i % 3 + 1]), folder / f"img{i:03d}.png")
    return folder


@pytest.mark.parametrize("cluster", ["env", "slurm"])
def test_a_two_node_predict_catalogues_every_image_once_and_writes_the_batch_files_once(tmp_path, cluster):
    folder, model = write_inputs(tmp_path / "in", 9), tiny_checkpoint(tmp_path / "m.ckpt", score_threshold=0.0)
    out = tmp_path / "out"
    nodes = on_two_nodes(["predict", "--checkpoint", str(model), "--out", str(out), str(folder), "--device", "cpu",
                          "--num-nodes", "2", "--devices", "1"], tmp_path / "logs", cluster)
    assert [node.returncode for node in nodes] == [0, 0], nodes[0].stderr[-3000:] + nodes[1].stderr[-3000:]
    journals = {node: [json.loads(line)["image"] for line in (out / f"journal.node-{node}.jsonl").read_text().splitlines()]
                for node in (0, 1)}
    assert journals[0] and journals[1] and sorted(journals[0] + journals[1]) == [f"img{i:03d}.png" for i in range(9)]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["done"], summary["failed"]) == (9, 9, 0)
    assert "9 done" in nodes[0].stdout and nodes[1].stdout == ""  # one summary, printed once
    if cluster != "env":
        return  # the same rocks as one process: shown once
    single = subprocess.run([sys.executable, "-m", "rockdet.cli.main", "predict", "--checkpoint", str(model),
                             "--out", str(tmp_path / "single"), str(folder), "--device", "cpu"], capture_output=True)
    assert single.returncode == 0
    assert read_catalog_csv(out / "rocks.csv") == read_catalog_csv(tmp_path / "single" / "rocks.csv")


def test_an_unrelated_run_into_the_same_out_is_still_refused(tmp_path, monkeypatch):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from rockdet.io.layout import OutputLayout, hold_output_lock\n"
                               "with hold_output_lock(OutputLayout.at(sys.argv[1])):\n"
                               "    print('held', flush=True); time.sleep(60)\n", str(out)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "ROCKDET_RUN_ID": "job-1"})
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("ROCKDET_RUN_ID", "job-2")
        try:
            with hold_output_lock(OutputLayout.at(out)):
                raise AssertionError("a run of another id got the lock")
        except Exception as refused:
            assert "another rockdet run is writing here (pid" in str(refused) and "run rockdet:job-1" in str(refused)
        monkeypatch.setenv("ROCKDET_RUN_ID", "job-1")  # the same run, on another machine: joins
        with hold_output_lock(OutputLayout.at(out)):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_two_node_training_epoch_splits_the_data_and_writes_one_run_folder(synthetic_data, tmp_path):
    runs = tmp_path / "runs"
    nodes = on_two_nodes(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"),
                          *tiny_train_overrides(synthetic_data, "null", **{
                              "run.out_dir": runs, "run.name": "nodes", "trainer.num_nodes": 2, "trainer.devices": 1,
                              "trainer.strategy": "ddp", "data.num_workers": 0})], tmp_path / "logs")
    assert [node.returncode for node in nodes] == [0, 0], nodes[0].stderr[-3000:] + nodes[1].stderr[-3000:]
    # Named by the run id both machines share, not by a start time each would choose itself.
    assert [p.name for p in runs.iterdir()] == ["nodes_rockdet-job-42"]
    summary = json.loads((runs / "nodes_rockdet-job-42" / "summary.json").read_text())
    # 6 images, 3 to a batch, shared between the nodes: one step each makes the epoch.
    assert summary["global_step"] == 1 and Path(summary["model_file"]).is_file()
    assert sorted(p.name for p in (runs / "nodes_rockdet-job-42" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
