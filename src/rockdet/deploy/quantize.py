"""`rockdet export --quantize int8`: post-training static INT8 quantization of an exported ONNX
detector, calibrated on tiles of the user's own images, with a parity report against FP32.

How (measured on the CPU recipe's detector, docs/BENCHMARKS.md issue 22): ONNX Runtime static
quantization in QDQ form, INT8 weights per output channel, UINT8 activations calibrated by min/max
on tiles cut at random from the calibration images at the model's input size; convolutions and
fully connected layers only, so RoIAlign, NMS and the box decoding stay FP32. The heads' output
layers (``FLOAT_LAYERS``: the class logits and box deltas of the RPN, the box and mask predictors,
RetinaNet's and FCOS's heads) stay FP32 as well: their outputs are the scores and box offsets
themselves, so 8-bit steps there move detections across the threshold directly, and they are a
small share of the arithmetic (stop 36 in docs/BENCHMARKS.md). The file keeps
rockdet's metadata plus a ``quantization`` record: how, on what, and its parity with FP32.

Parity with FP32 cannot be export's (boxes within 0.5 px, scores within 0.001): INT8 moves scores by
about 0.01 and some boxes by pixels, so a detection near the threshold may cross it. A quantized
file passes when, over the parity scene and 8 more tiles cut from the calibration images at
other random places (a different seed), at the operating
threshold (detections are paired at IoU >= ``PAIR_IOU``, each side searched down to
``SCORE_MARGIN`` below the threshold):
- its rock count is within ``COUNT_TOLERANCE`` (a share) of the FP32 count;
- at least ``PAIRED_SHARE`` of each side's detections have a partner;
- the partners' median score difference is at most ``MEDIAN_SCORE_TOLERANCE`` and their median
  box difference at most ``MEDIAN_BOX_TOLERANCE_PX``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from rockdet.errors import RockdetError, exception_reason
from rockdet.models.info import ModelInfo

log = logging.getLogger(__name__)

QUANTIZE_CHOICES = ("int8",)
#: Calibration tiles by default ("a few hundred"); each runs the FP32 model once.
DEFAULT_CALIBRATION_TILES = 256
#: Tiles cut from the calibration images at other random places for the parity report.
PARITY_TILES = 8
CALIBRATION_SEED = 0
#: Min/max statistics are folded every (at most) this many tiles, so calibration memory stays flat.
CALIBRATION_CHUNK = 16
OPERATORS = ("Conv", "Gemm", "MatMul")
#: Layers left in FP32, by the module name inside an ONNX node's name (torch.onnx names a node
#: after its module path, e.g. /model/rpn/head/cls_logits_1/Conv).
FLOAT_LAYERS = ("cls_logits", "bbox_pred", "cls_score", "bbox_reg", "bbox_ctrness", "mask_fcn_logits")
PAIR_IOU = 0.5
SCORE_MARGIN = 0.05
COUNT_TOLERANCE = 0.10
PAIRED_SHARE = 0.90
MEDIAN_SCORE_TOLERANCE = 0.03
MEDIAN_BOX_TOLERANCE_PX = 1.0
#: Fewer FP32 rocks than this at the threshold: parity compares this many of the best instead.
MIN_PARITY_ROCKS = 20


class QuantizeError(RockdetError):
    """Quantization was refused or its parity check failed; the message says why in one line."""


@dataclass
class QuantizedParity:
    fp32_rocks: int
    int8_rocks: int
    fp32_paired: float
    int8_paired: float
    median_score_error: float
    median_box_error_px: float
    threshold: float
    images: int

    @property
    def passed(self) -> bool:
        counted = abs(self.int8_rocks - self.fp32_rocks) <= COUNT_TOLERANCE * max(self.fp32_rocks, 1)
        return counted and min(self.fp32_paired, self.int8_paired) >= PAIRED_SHARE and \
            self.median_score_error <= MEDIAN_SCORE_TOLERANCE and self.median_box_error_px <= MEDIAN_BOX_TOLERANCE_PX

    def describe(self) -> str:
        return (f"{self.images} images at score {self.threshold:g}: {self.fp32_rocks} FP32 rocks, {self.int8_rocks} INT8; "
                f"{self.fp32_paired:.0%} / {self.int8_paired:.0%} paired at IoU {PAIR_IOU}, median differences "
                f"{self.median_score_error:.3f} in score and {self.median_box_error_px:.2f} px (tolerances: count within "
                f"{COUNT_TOLERANCE:.0%}, {PAIRED_SHARE:.0%} paired, medians {MEDIAN_SCORE_TOLERANCE} and "
                f"{MEDIAN_BOX_TOLERANCE_PX} px)")


def calibration_tiles(files: list[Path], count: int, side: int, seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """``count`` tiles [3, side, side] (float32, 0..1) cut at random from ``files``
    (calibration_images), read as predict reads them."""
    from rockdet.io.images import read_image

    rng = np.random.default_rng(seed)
    tiles = []
    for index in rng.choice(len(files), size=count, replace=count > len(files)):
        try:
            pixels = read_image(files[index]).pixels
        except Exception as exc:
            raise QuantizeError(f"--calibration: {files[index]} cannot be read ({exception_reason(exc)})") from None
        y = int(rng.integers(0, max(1, pixels.shape[0] - side + 1)))
        x = int(rng.integers(0, max(1, pixels.shape[1] - side + 1)))
        crop = pixels[y:y + side, x:x + side]
        canvas = np.zeros((side, side, 3), dtype=np.uint8)
        canvas[:crop.shape[0], :crop.shape[1]] = crop
        tiles.append(np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32) / 255)
    return tiles


def calibration_images(source: Path) -> list[Path]:
    """The images of ``source``: a COCO file (its images), a folder, a glob or a .txt list."""
    from rockdet.io.inputs import collect_inputs

    source = Path(source)
    if source.suffix.lower() == ".json" and source.is_file():
        try:
            document = json.loads(source.read_text())
            files = [source.parent / image["file_name"] for image in document["images"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise QuantizeError(f"--calibration {source}: not a COCO file with images ({exception_reason(exc)})") from None
        if not files:
            raise QuantizeError(f"--calibration {source}: the COCO file lists no images")
        return files
    try:
        return [image.path for image in collect_inputs([str(source)])]
    except RockdetError as exc:
        raise QuantizeError(f"--calibration: {exc}") from None


def quantize_onnx(fp32: Path, int8: Path, tiles: list[np.ndarray], info: ModelInfo) -> dict:
    """Write ``int8``, the static INT8 form of the exported ``fp32`` (whose ModelInfo is
    ``info``), calibrated on ``tiles``; returns how it was made (also stored in its metadata)."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise QuantizeError("INT8 quantization needs onnx and onnxruntime: pip install 'rockdet[onnx]'") from None
    class Tiles(CalibrationDataReader):
        """The tiles, a range at a time (ONNX Runtime's strided calibration folds each range's
        minima and maxima before the next, so memory holds one range's activations)."""

        def __init__(self):
            self.position, self.end = 0, len(tiles)

        def __len__(self):
            return len(tiles)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.position, self.end = start_index, end_index

        def get_next(self):
            if self.position >= self.end:
                return None
            self.position += 1
            return {"image": tiles[self.position - 1]}

    # The stride must divide the tile count. (ONNX Runtime's other memory bound,
    # CalibMaxIntermediateOutputs, drops each full chunk unread in onnxruntime 1.32.)
    stride = max(size for size in range(1, CALIBRATION_CHUNK + 1) if len(tiles) % size == 0)

    prepared = int8.with_name(int8.name + ".prepared.onnx")
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(max(level, logging.WARNING))  # ONNX Runtime's quantizer logs a line per tensor at INFO
    try:
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        float_nodes = float_layers(prepared)
        if not float_nodes:
            log.warning("%s: no head output layer found by name (%s); every layer is quantized",
                        fp32.name, ", ".join(FLOAT_LAYERS))
        how = {"method": "onnxruntime static quantization, QDQ", "weights": "int8 per channel",
               "activations": "uint8, min/max calibration", "operators": list(OPERATORS),
               "fp32_layers": float_nodes, "calibration_tiles": len(tiles)}
        quantize_static(str(prepared), str(int8), Tiles(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        op_types_to_quantize=list(OPERATORS), calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=float_nodes, extra_options={"CalibStridedMinMax": stride})
    except Exception as exc:  # ONNX Runtime raises many kinds for a graph it cannot quantize
        raise QuantizeError(f"{fp32.name}: INT8 quantization failed ({exception_reason(exc)})") from None
    finally:
        root.setLevel(level)
        prepared.unlink(missing_ok=True)
    write_info(int8, replace(info, quantization=how))
    return how


def float_layers(fp32: Path) -> list[str]:
    """The names of the ONNX nodes in ``fp32`` that stay FP32: the heads' output layers."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in OPERATORS
            and any(f"/{layer}" in node.name for layer in FLOAT_LAYERS)]


def record_parity(int8: Path, info: ModelInfo, parity: QuantizedParity, **more: str) -> None:
    """Add the parity report to the quantized file's metadata: the file says how well it kept FP32."""
    record = {**dict(info.quantization or {}), **more, "parity_with_fp32": {**asdict(parity), "passed": parity.passed}}
    write_info(int8, replace(info, quantization=record))


def write_info(path: Path, info: ModelInfo) -> None:
    """Replace the rockdet metadata of the ONNX file at ``path`` with ``info``'s."""
    import onnx

    from rockdet.deploy.export import ONNX_OPSET
    from rockdet.predict.runtimes import METADATA_KEY

    document = onnx.load(str(path))
    del document.metadata_props[:]
    entry = document.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info.to_metadata(format="onnx", onnx_opset=ONNX_OPSET))
    document.doc_string = f"rockdet {info.arch} rock detector" + (" (INT8)" if info.quantization else "")
    onnx.save(document, str(path))


def check_quantized_parity(reference, candidate, images: list[torch.Tensor], threshold: float) -> QuantizedParity:
    """The FP32 and INT8 detectors' rocks at ``threshold`` on ``images``, paired (module docstring).
    When FP32 finds fewer than ``MIN_PARITY_ROCKS`` there, the threshold is lowered to its
    ``MIN_PARITY_ROCKS``-th best score, so a model that scores low on these images is still checked."""
    with torch.inference_mode():
        outputs = [[detector([image])[0] for detector in (reference, candidate)] for image in images]
    ranked = torch.cat([sides[0]["scores"].float() for sides in outputs]).sort(descending=True).values
    if 0 < int((ranked >= threshold).sum()) < MIN_PARITY_ROCKS or (len(ranked) and ranked[0] < threshold):
        threshold = min(threshold, float(ranked[min(MIN_PARITY_ROCKS, len(ranked)) - 1]))
    rocks, paired, score_errors, box_errors = [0, 0], [0, 0], [], []
    for sides in outputs:
        boxes = [side["boxes"].float() for side in sides]
        scores = [side["scores"].float() for side in sides]
        for mine, theirs in ((0, 1), (1, 0)):
            kept = scores[mine] >= threshold
            rocks[mine] += int(kept.sum())
            near = scores[theirs] >= threshold - SCORE_MARGIN
            if not kept.any() or not near.any():
                continue
            best, partner = box_iou(boxes[mine][kept], boxes[theirs][near]).max(dim=1)
            found = best >= PAIR_IOU
            paired[mine] += int(found.sum())
            if mine == 0 and found.any():
                own, other = boxes[0][kept][found], boxes[1][near][partner[found]]
                box_errors += (own - other).abs().amax(dim=1).tolist()
                score_errors += (scores[0][kept][found] - scores[1][near][partner[found]]).abs().tolist()
    return QuantizedParity(rocks[0], rocks[1], paired[0] / max(rocks[0], 1), paired[1] / max(rocks[1], 1),
                           float(np.median(score_errors)) if score_errors else 0.0,
                           float(np.median(box_errors)) if box_errors else 0.0, threshold, len(images))
