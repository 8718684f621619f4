"""Split the shared Mars Mastcam scenes into a training half and a validation half, by sol.

    python scripts/split_marsdata.py ../shared/data/marsdata-dense/images/_annotations.coco.json \
        --out configs/splits

Frames of one sol (the first number of a MarsData file name; ``cr_NNN`` files give it second)
often show the same rocks from nearby, so a sol goes wholly to one half: no validation rock was
seen in training. Sols are dealt alternately, biggest first, within each subset (Rock-A: few
prominent rocks, Rock-B: cluttered), so both halves hold both kinds. Writes
``marsdata_train.txt`` and ``marsdata_val.txt`` (image file names, the sources' ``image_list``).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def sol_of(file_name: str) -> str:
    parts = Path(file_name).stem.split("_")
    return parts[1] if parts[0] == "cr" else parts[0]


def split_by_sol(images: list[dict]) -> tuple[list[str], list[str]]:
    halves: tuple[list[str], list[str]] = ([], [])
    sols: dict[str, list[dict]] = defaultdict(list)
    for image in images:
        sols[sol_of(image["file_name"])].append(image)
    by_subset: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for sol, members in sols.items():
        subsets = [str(m.get("subset", "")) for m in members]
        by_subset[max(sorted(set(subsets)), key=subsets.count)].append((sol, [m["file_name"] for m in members]))
    for subset in sorted(by_subset):
        for _sol, names in sorted(by_subset[subset], key=lambda item: (-len(item[1]), item[0])):
            smaller = min((0, 1), key=lambda half: (len(halves[half]), half))
            halves[smaller].extend(sorted(names))
    return sorted(halves[0]), sorted(halves[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("coco", type=Path)
    parser.add_argument("--out", type=Path, default=Path("configs/splits"))
    options = parser.parse_args()
    images = json.loads(options.coco.read_text())["images"]
    train, val = split_by_sol(images)
    overlap = {sol_of(n) for n in train} & {sol_of(n) for n in val}
    assert not overlap, f"sols in both halves: {sorted(overlap)}"
    options.out.mkdir(parents=True, exist_ok=True)
    header = f"# MarsData V1 test scenes (CC BY 4.0), split by sol with scripts/split_marsdata.py from {options.coco.name}\n"
    for name, names in (("marsdata_train.txt", train), ("marsdata_val.txt", val)):
        (options.out / name).write_text(header + "\n".join(names) + "\n")
        print(f"{options.out / name}: {len(names)} images")


if __name__ == "__main__":
    main()
