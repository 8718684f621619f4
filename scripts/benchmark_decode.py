"""Decoding throughput of PDS products against PNG of the same pixels, and against the model.

    python scripts/benchmark_decode.py [--repeats 5]

Writes a 1024x1024 16-bit PDS3 Navcam-like product (attached label, 12 valid bits) and a
2352x1728 Chang'e PCAM-like level-2B frame (PDS4 label .2BL, 10-bit raw Bayer) into a temporary
folder, with 16-bit PNGs of the same pixels, and times `read_image` on each, interleaved in one
process. It also times the CPU recipe's detector (configs/lunar_cpu.yaml's architecture, random
weights: the cost does not depend on them) over the same images through `detect_images`, so
the decode share of predict's time per image can be read off (target: at most 10 %).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pds_products import camera_group, navcam_for, write_pds3, write_pds4  # noqa: E402
from timing import median_seconds  # noqa: E402

from rockdet.io.images import read_image  # noqa: E402
from rockdet.models import build_detector  # noqa: E402
from rockdet.predict.detect import detect_images  # noqa: E402
from rockdet.predict.settings import PredictSettings  # noqa: E402

#: The CPU recipe's detector (configs/lunar_cpu.yaml) at its training size.
RECIPE = {"arch": "fasterrcnn_resnet18_fpn", "fpn_channels": 128, "min_size": 432, "max_size": 432}


def products(folder: Path) -> dict[str, tuple[Path, Path]]:
    rng = np.random.default_rng(0)
    navcam = rng.integers(200, 4000, (1024, 1024)).astype(np.uint16)
    change = rng.integers(10, 1000, (1728, 2352)).astype(np.uint16)
    pds3 = write_pds3(folder / "NLB_navcam.IMG", navcam, camera_group("CAHV", navcam_for(1024)), record_bytes=2048)
    label = write_pds4(folder / "CE4_PCAM.2BL", change)
    label.with_suffix(".IMG").rename(folder / "CE4_PCAM.2B")
    label.write_text(label.read_text().replace("CE4_PCAM.IMG", "CE4_PCAM.2B"))
    pngs = {}
    for name, values in (("navcam", navcam), ("change", change)):
        pngs[name] = folder / f"{name}.png"
        Image.fromarray(values).save(pngs[name])
    return {"PDS3 Navcam 1024x1024 16-bit": (pds3, pngs["navcam"]),
            "Chang'e PCAM 2B 2352x1728 10-bit Bayer": (folder / "CE4_PCAM.2B", pngs["change"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    torch.manual_seed(0)
    model = build_detector(**RECIPE).eval()
    settings = PredictSettings(score_threshold=0.5, tile_batch=4)
    with tempfile.TemporaryDirectory() as folder:
        print(f"torch threads: {torch.get_num_threads()}")
        print("| product | PDS decode (s) | PNG decode (s) | model, tiled predict (s) | decode / model |")
        print("|---|---|---|---|---|")
        for name, (product, png) in products(Path(folder)).items():
            pds_seconds = median_seconds(lambda p=product: read_image(p), options.repeats, warm_up=False)
            png_seconds = median_seconds(lambda p=png: read_image(p), options.repeats, warm_up=False)
            pixels = read_image(product).pixels
            model_seconds = median_seconds(lambda px=pixels: list(detect_images(model, [px], settings, 432)), 1,
                                           warm_up=False)
            print(f"| {name} | {pds_seconds:.3f} | {png_seconds:.3f} | {model_seconds:.2f} | "
                  f"{pds_seconds / model_seconds:.1%} |")


if __name__ == "__main__":
    main()
