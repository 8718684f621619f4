"""What enumerating a batch's inputs costs (issue 21): `collect_inputs` over a folder of N files,
1,000 to a subfolder as archives are laid out, in this tree's rockdet and in a baseline tree
(another commit's ``src``), side by side, each in a fresh process.

Reports the seconds (enumerating, then reading the list back once) and the process's peak RSS
growth over its state before the call, and, from a second run under tracemalloc, the peak of
Python's own allocations. The files are empty: enumeration never
opens them.

    git worktree add /tmp/baseline 9e42c6e
    python scripts/benchmark_inputs.py --images 100000 --work /tmp/inputs --baseline /tmp/baseline/src
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

MEASURE = """
import hashlib, json, resource, sys, time, tracemalloc
sys.path.insert(0, {src!r})
import rockdet
assert rockdet.__file__.startswith({src!r}), rockdet.__file__  # not an installed copy
from rockdet.io.inputs import collect_inputs
from rockdet.io.resolved import folders_resolved_once
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if {traced}:
    tracemalloc.start()
started = time.perf_counter()
with folders_resolved_once():
    images = collect_inputs([{folder!r}])
    keys = hashlib.sha256()
    for image in images:  # read back once, as a run's final pass does
        keys.update(f"{{image.path}}\\t{{image.key}}\\n".encode("utf-8", "surrogateescape"))
seconds = time.perf_counter() - started
peak = tracemalloc.get_traced_memory()[1]
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"images": len(images), "seconds": seconds, "traced_peak_mib": peak / 2**20,
                  "rss_growth_mib": grown / 1024, "listed": keys.hexdigest()}}))
"""


def write_tree(folder: Path, count: int) -> Path:
    for index in range(count):
        path = folder / f"{index // 1000:04d}" / f"img{index:07d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    return folder


def measure(src: Path, folder: Path) -> dict:
    """Seconds and RSS from a plain run; the traced peak from a second one under tracemalloc
    (which slows allocation and adds its own memory)."""
    plain, traced = (_run(src, folder, traced) for traced in (False, True))
    return {**plain, "traced_peak_mib": traced["traced_peak_mib"]}


def _run(src: Path, folder: Path, traced: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE.format(src=str(src), folder=str(folder), traced=traced)],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{src}: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[10000])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, help="another tree's src folder, measured side by side")
    options = parser.parse_args()
    trees = [("this tree", Path(__file__).resolve().parents[1] / "src")]
    if options.baseline:
        trees.insert(0, ("baseline", options.baseline.resolve()))
    print("| images | rockdet | s | traced peak MiB | bytes an image | peak RSS growth MiB |")
    print("|---|---|---|---|---|---|")
    for count in options.images:
        folder = write_tree(options.work / str(count), count)
        rows = [(name, measure(src, folder)) for name, src in trees]
        if len({(row["images"], row["listed"]) for _, row in rows}) != 1:  # same paths, keys and order
            raise SystemExit(f"the trees list different inputs: {rows}")
        for name, row in rows:
            print(f"| {count:,} | {name} | {row['seconds']:.2f} | {row['traced_peak_mib']:.1f} | "
                  f"{row['traced_peak_mib'] * 2**20 / count:.0f} | {row['rss_growth_mib']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
