"""The `rockdet` command line: subcommands, their options, and the types that check them."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rockdet.predict.settings import CPU_TILE_BATCH, GPU_TILE_BATCH, PredictSettings

DESCRIPTION = "rockdet: train, evaluate, predict, pseudo-label, data-report, synth, sfd, export, report"
#: Settings whose command-line flag is not their name with dashes.
FLAGS = {"tile_batch": "--batch-size", "formats": "--format", "wait_for_lock": "--wait",
         "nested_threshold": "--keep-nested", "sky_fraction": "--keep-on-black",
         "drop_above_horizon": "--drop-above-horizon", "image": "INPUT"}


def flag_of(key: str) -> str:
    """The command-line flag of a setting (PredictSettings field), for errors that name it."""
    return FLAGS.get(key, "--" + key.replace("_", "-"))


def _count(least: int):
    """argparse type: an integer of at least ``least``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value
    return parse


def _positive_number(text: str) -> float:
    """argparse type: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _folder(text: str) -> Path:
    """argparse type: a folder name; an empty one would silently mean the working directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a folder (an empty name would mean the working directory)")
    return Path(text)


#: What predict does unless told otherwise (one place: PredictSettings).
DEFAULTS = PredictSettings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rockdet", description=DESCRIPTION)
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    loudness.add_argument("-v", "--verbose", action="store_true", help="debug messages, and library "
                          "warnings rockdet otherwise filters as harmless")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune a detector from a YAML config")
    train.add_argument("--config", type=Path, required=True)
    train.add_argument("--resume", type=Path, help="checkpoint to continue from (e.g. last.ckpt)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides, e.g. trainer.max_epochs=20 trainer.devices=2")

    evaluate = commands.add_parser("evaluate", help="metrics of a checkpoint on labelled images")
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    _add_data_arguments(evaluate)
    evaluate.add_argument("--out", type=Path, help="metrics JSON (a PR curve PNG is written beside it)")
    evaluate.add_argument("--batch-size", type=_count(1), default=4)
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--score-threshold", type=float, help="operating point (default: as trained)")
    evaluate.add_argument("--image-list", type=Path, help="text file of image names: judge only these "
                          "(e.g. configs/splits/marsdata_val.txt)")
    evaluate.add_argument("--tta", choices=("none", "flip"), default=DEFAULTS.tta, help="judge the catalogs "
                          "`rockdet predict --tta` writes (flip: each tile mirrored as well, the views fused)")
    _add_trust_argument(evaluate)

    predict = commands.add_parser("predict", help="rock catalogs for a batch of images")
    predict.add_argument("--checkpoint", type=Path, required=True, help="a rockdet .ckpt, or a file of "
                         "`rockdet export` (.onnx runs in ONNX Runtime, .torchscript in TorchScript)")
    predict.add_argument("--out", type=_folder, required=True, help="output folder (mirrors the inputs)")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="image files, folders (recursive), globs, or .txt files listing paths")
    predict.add_argument("--score-threshold", type=float, help="default: the checkpoint's eval threshold")
    predict.add_argument("--tile", type=int, help="tile size in px (default: automatic, at the "
                         "training image size, when an image is larger)")
    predict.add_argument("--overlap", type=float, default=DEFAULTS.overlap, help="tile overlap fraction")
    predict.add_argument("--merge-threshold", type=float, default=DEFAULTS.merge_threshold)
    predict.add_argument("--merge-metric", choices=("ios", "iou"), default=DEFAULTS.merge_metric)
    predict.add_argument("--merge-method", choices=("nmm", "nms"), default=DEFAULTS.merge_method)
    predict.add_argument("--keep-nested", action="store_true", help="keep a detection lying mostly inside "
                         "another (default: the higher-scoring of the two stays; one rock, one row)")
    predict.add_argument("--keep-on-black", action="store_true", help="keep detections on featureless "
                         "black (default: dropped; sky and no-data borders hold no rocks)")
    predict.add_argument("--min-diameter-px", type=_positive_number, metavar="PX", help="completeness limit: "
                         "leave out rocks whose diameter_px is below PX (default: every size; the Mars Mastcam "
                         "labels mark rocks from about 15-20 px, the Chang'e labels from 7 px)")
    predict.add_argument("--drop-above-horizon", action="store_true", help="leave out detections whose "
                         "ground contact lies above the horizon of a known camera model (flat sites; on a "
                         "slope the terrain rises above it). Default: kept, flagged above_horizon")
    predict.add_argument("--full-image-pass", action="store_true", help="also run the whole image "
                         "once (rocks larger than a tile)")
    predict.add_argument("--tta", choices=("none", "flip"), default=DEFAULTS.tta, help="test-time augmentation: "
                         "flip also runs each tile mirrored and fuses the two views (a detection both views agree "
                         "on ranks higher; twice the model's work, the mirrored tiles counted in --batch-size). "
                         "Default: none")
    predict.add_argument("--batch-size", type=_count(1), help="tiles per forward pass (default: "
                         f"{CPU_TILE_BATCH} on CPU, {GPU_TILE_BATCH} on GPU); with --tta flip the mirrored tiles "
                         "count too, so half as many tiles (at least one, so two images) go in a pass")
    _add_head_arguments(predict)
    predict.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino"), default=DEFAULTS.runtime,
                         help="what runs an exported .onnx --checkpoint (default auto: OpenVINO when "
                         "installed, rockdet[openvino], and on the CPU, the fastest measured; else ONNX Runtime)")
    predict.add_argument("--device", default=DEFAULTS.device, help="auto, cpu, cuda or cuda:N")
    predict.add_argument("--devices", type=_count(1), default=DEFAULTS.devices, help="number of GPUs (DDP)")
    predict.add_argument("--num-nodes", type=_count(1), default=DEFAULTS.num_nodes,
                         help="machines of a multi-node run started by SLURM or torchrun (--devices on each)")
    predict.add_argument("--workers", type=_count(0), default=DEFAULTS.workers, help="image-decoding worker processes")
    predict.add_argument("--overlay", action="store_true", help="write overlays/NAME.png with boxes and ids")
    predict.add_argument("--format", default=",".join(DEFAULTS.formats), help="csv,json[,parquet][,coco]")
    predict.add_argument("--camera", default=DEFAULTS.camera, metavar="auto|none|FILE",
                         help="metric sizes: auto (default) uses each PDS product's own camera model "
                         "from its label; FILE is one camera YAML for every image; none turns sizing off")
    predict.add_argument("--ground-z", type=float, metavar="METRES", help="ground plane height (z, down) "
                         "in the label model's frame (default: 0 in ROVER_NAV_FRAME)")
    predict.add_argument("--overwrite", action="store_true", help="redo images already catalogued")
    predict.add_argument("--verify", action="store_true", help="on resume, hash every finished input "
                         "(default: trust inputs whose size and times are as the journal recorded them)")
    _add_trust_argument(predict)
    predict.add_argument("--shard", metavar="K/N", help="catalogue only every N-th input from the K-th "
                         "(array jobs into one --out); then run once without --shard to write the batch files")
    predict.add_argument("--wait", action="store_true", help="if another run is writing to --out, "
                         "wait for it to finish instead of refusing")
    predict.add_argument("--as-trained", action="store_true", help="run the model exactly as trained, "
                         "without folding batch norms into convolutions or the channels-last layout "
                         "(slower; same rocks up to float rounding)")

    pseudo = commands.add_parser("pseudo-label", help="add a checkpoint's confident unlabelled "
                                 "rocks to a copy of a COCO training file (sparse labels)")
    pseudo.add_argument("--checkpoint", type=Path, required=True)
    pseudo.add_argument("--data", type=Path, required=True, help="COCO .json of the training split")
    pseudo.add_argument("--out", type=Path, required=True, help="COCO .json to write")
    pseudo.add_argument("--min-score", type=float, required=True,
                        help="only detections this confident become labels")
    pseudo.add_argument("--rock-classes", nargs="+", help="default: the checkpoint's")
    pseudo.add_argument("--batch-size", type=_count(1), default=4)
    pseudo.add_argument("--device", default="cpu")
    _add_trust_argument(pseudo)

    report = commands.add_parser("data-report", help="counts, rock sizes and problems of a data set")
    _add_data_arguments(report, flag="path")

    sfd = commands.add_parser("sfd", help="rock size-frequency statistics and Golombek-Rapp fit")
    sfd.add_argument("catalogs", type=Path, metavar="CATALOG_DIR_OR_CSV",
                     help="predict output folder (run with --camera), or one catalog CSV/JSON")
    sfd.add_argument("--out", type=Path, required=True)
    sfd.add_argument("--area-m2", type=_positive_number, help="imaged ground area (default: from the catalogs)")
    sfd.add_argument("--min-diameter-m", type=_positive_number, help="completeness cut-off (default: estimated)")
    sfd.add_argument("--bootstrap", type=_count(0), default=500, help="resamples for the 95%% intervals")
    sfd.add_argument("--seed", type=int, default=0)

    report = commands.add_parser("report", help="rebuild report.html of a predict output folder from "
                                 "its catalogs")
    report.add_argument("folder", type=Path, metavar="PREDICT_OUT_DIR")

    export = commands.add_parser("export", help="a checkpoint as an ONNX or TorchScript file, with a "
                                 "parity check against PyTorch")
    export.add_argument("--checkpoint", type=Path, required=True)
    export.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    export.add_argument("--out", type=Path, required=True, help="file to write (.onnx or .torchscript)")
    _add_head_arguments(export)
    export.add_argument("--score-floor", type=float, metavar="SCORE",
                        help="the lowest score the exported graph returns; predict cannot go below it (default: "
                        "a Mask R-CNN's operating point, where it ran 32x faster in OpenVINO than pasting a mask for "
                        "every box down to 0.001; other detectors' floor as built)")
    export.add_argument("--parity-threshold", type=float, help="score from which detections are compared "
                        "(default: the checkpoint's eval.score_threshold)")
    export.add_argument("--quantize", choices=("int8",), help="write the ONNX model with INT8 weights and "
                        "activations (static quantization; on a CPU with VNNI 1.8-2.8x the FP32 speed), checked "
                        "against FP32 with stated tolerances; needs --calibration")
    export.add_argument("--calibration", type=Path, metavar="DATA", help="images whose tiles set the INT8 "
                        "ranges: a COCO file, a folder, a glob or a .txt list (training images, not the ones judged)")
    export.add_argument("--calibration-tiles", type=_count(1), metavar="N",
                        help="tiles cut from --calibration (default 256; each runs the FP32 model once)")
    _add_trust_argument(export)

    synth = commands.add_parser("synth", help="write a seeded synthetic terrain data set (COCO)")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--train", type=int, default=48)
    synth.add_argument("--val", type=int, default=16)
    synth.add_argument("--size", type=int, default=256, help="image width and height in pixels")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--sun-azimuth", type=float, default=150.0)
    synth.add_argument("--sun-elevation", type=float, default=30.0)
    return parser


def _add_head_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--proposals", type=_count(1), help="RPN proposals kept per tile (two-stage "
                        "detectors; default: the checkpoint's). Fewer run faster: see docs/BENCHMARKS.md")
    parser.add_argument("--detections-per-tile", type=_count(1), help="detections kept per tile "
                        "(default: the checkpoint's)")


def _add_trust_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint that holds Python objects beyond tensors and plain "
                        "data (unpickling can run code: only for files you made)")


def _add_data_arguments(parser: argparse.ArgumentParser, flag: str = "--data") -> None:
    parser.add_argument(flag, type=Path, help="COCO .json, YOLO data .yaml, or image folder with --masks",
                        **({"required": True} if flag.startswith("--") else {}))
    parser.add_argument("--images", type=Path, help="image folder (COCO; default: the JSON's folder)")
    parser.add_argument("--masks", type=Path, help="mask folder: PATH is then the image folder")
    parser.add_argument("--mask-mode", choices=("instance", "binary"), default="instance")
    parser.add_argument("--split", default="val", help="YOLO split (default val)")
    parser.add_argument("--rock-classes", nargs="+", default=["rock", "boulder"])
