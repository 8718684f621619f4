"""`rockdet export`: a checkpoint as an ONNX or TorchScript file that runs without the training
stack, with rockdet's metadata inside and a parity check against the PyTorch model.

The exported graph takes one image [3, H, W] (float, 0..1, any size: the model's own resize is
inside) and returns boxes [N, 4], scores [N] and labels [N] (Mask R-CNN also masks [N, 1, H, W]),
exactly what the torchvision model returns for one image.

Parity (documented tolerances): every detection of the PyTorch model scoring at least the
threshold has a partner in the export with boxes within ``BOX_TOLERANCE_PX`` and scores within
``SCORE_TOLERANCE``, and the other way round; only detections within ``SCORE_TOLERANCE`` of the
threshold may lack a partner, since rounding can put them on either side of it.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from rockdet.atomic import atomic_path
from rockdet.errors import RockdetError, exception_reason
from rockdet.io.output_guard import check_output_file, refuse_inputs_as_outputs
from rockdet.models import load_model
from rockdet.models.inference_head import InferenceHead
from rockdet.models.info import ModelInfo
from rockdet.models.sparse_labels import disable_sparse_label_training
from rockdet.predict.detect import keeping_from, score_floor_holder
from rockdet.predict.runtimes import METADATA_KEY, ONNX_SUFFIXES, TORCHSCRIPT_METADATA_FILE, TORCHSCRIPT_SUFFIXES, load_exported

if TYPE_CHECKING:
    from rockdet.deploy.quantize import QuantizedParity

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torchscript")
#: ONNX opset: 17 has every operator torchvision's detectors need (RoIAlign, NMS, Resize).
ONNX_OPSET = 17
BOX_TOLERANCE_PX = 0.5
SCORE_TOLERANCE = 1e-3
#: When fewer detections reach the threshold, parity compares this many of the best instead, so a
#: model that scores low on the parity scene is still checked.
MIN_PARITY_DETECTIONS = 10
#: Seed of the terrain scene the parity check runs on.
PARITY_SCENE_SEED = 0


class ExportError(RockdetError):
    """Export was refused or its parity check failed; the message says why in one line."""


@dataclass
class Parity:
    compared: int
    unmatched: int
    max_box_error_px: float
    max_score_error: float

    @property
    def passed(self) -> bool:
        return self.unmatched == 0 and self.max_box_error_px <= BOX_TOLERANCE_PX and \
            self.max_score_error <= SCORE_TOLERANCE

    def describe(self) -> str:
        return (f"{self.compared} detections compared, {self.unmatched} without a partner, boxes within "
                f"{self.max_box_error_px:.4f} px, scores within {self.max_score_error:.2e} (tolerances "
                f"{BOX_TOLERANCE_PX} px, {SCORE_TOLERANCE:g})")


def export_checkpoint(checkpoint: Path, export_format: str, out: Path, trust: bool = False,
                      parity_threshold: float | None = None, head: InferenceHead | None = None,
                      quantize: str | None = None, calibration: Path | None = None,
                      calibration_tiles: int | None = None,
                      score_floor: float | None = None) -> tuple[ModelInfo, Parity, QuantizedParity | None]:
    """Write ``out`` and return the ModelInfo it carries, the parity check's result with PyTorch
    (raises if it fails), and with ``quantize`` the quantized file's parity with FP32
    (deploy.quantize; raises if it fails), else None. ``score_floor``: the lowest score the
    graph returns (see set_score_floor)."""
    if export_format not in EXPORT_FORMATS:
        raise ExportError(f"--format {export_format}: choose one of {list(EXPORT_FORMATS)}")
    if quantize is not None:
        from rockdet.deploy.quantize import QUANTIZE_CHOICES

        if quantize not in QUANTIZE_CHOICES:
            raise ExportError(f"--quantize {quantize}: choose one of {list(QUANTIZE_CHOICES)}")
        if export_format != "onnx":
            raise ExportError(f"--quantize {quantize} quantizes an ONNX export; use --format onnx")
        if calibration is None:
            raise ExportError(f"--quantize {quantize} needs --calibration DATA: training images (a COCO file, "
                              f"a folder or a list) whose tiles set the INT8 ranges")
        from rockdet.deploy.quantize import calibration_images

        calibration_files = calibration_images(calibration)  # a wrong one fails before the export's work
    check_export_path(Path(checkpoint), Path(out), export_format)
    model, info = load_model(checkpoint, trust=trust)
    model = disable_sparse_label_training(model).eval()
    floor = set_score_floor(model, info, score_floor)
    threshold = info.operating_threshold if parity_threshold is None else parity_threshold
    if floor is not None and threshold < floor:
        named = f"--parity-threshold {threshold:g}" if parity_threshold is not None else \
            f"the parity check's threshold (the operating point {threshold:g})"
        raise ExportError(f"{named} is below the graph's score floor {floor:g}: nothing below it could be "
                          f"compared; lower --score-floor too")
    from rockdet import __version__

    # The export carries the head it was made with; the rockdet that made it writes the file.
    info = replace(info, head=(head or InferenceHead()).apply(model), rockdet_version=__version__, score_floor=floor)
    metadata = info.to_metadata(format=export_format, **({"onnx_opset": ONNX_OPSET} if export_format == "onnx" else {}))
    image = parity_image(info.input_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temp:
        if export_format == "onnx":
            _export_onnx(model, image, temp, info, metadata)
        else:
            _export_torchscript(model, temp, info, metadata)
        exported = load_exported(temp, export_format)
        parity = check_parity(model, exported, image, threshold)
        if not parity.passed:
            raise ExportError(f"{out}: parity check failed: {parity.describe()}; the file was not written")
        quantized = None
        if quantize is not None:
            quantized = _quantize(temp, exported, info, calibration, calibration_files, calibration_tiles,
                                  _quantized_parity_threshold(threshold, floor), out)
    return info, parity, quantized


def set_score_floor(model: nn.Module, info: ModelInfo, asked: float | None) -> float | None:
    """Fix the lowest score the exported graph returns, on ``model``, and return it (None: a model
    without a score floor). Once exported it cannot change, so predict refuses a threshold below it.

    By default a Mask R-CNN's floor is its operating point: it pastes a tile-sized mask for every
    box it returns, and the recipe's configs keep boxes down to 0.001 for validation, so an export
    at the built floor predicts the same catalog 32x slower in OpenVINO (3x in PyTorch;
    docs/BENCHMARKS.md, issue 17). A box-only graph keeps its built floor: its few hundred boxes a
    tile cost nothing measurable, and predict can then go below the operating point."""
    holder = score_floor_holder(model)
    if holder is None:
        if asked is not None:
            raise ExportError(f"--score-floor applies to torchvision detectors; {info.arch} has no score floor")
        return None
    if asked is None:
        if not info.has_masks:
            return holder.score_thresh
        if info.score_threshold is None:
            raise ExportError(f"{info.arch}: its operating point was never chosen (training did not finish), and a "
                              f"Mask R-CNN export returns no score below it; give --score-floor SCORE")
        asked = info.operating_threshold
    if not 0.0 <= asked <= 1.0:
        raise ExportError(f"--score-floor {asked:g}: give a score in 0..1")
    if info.score_threshold is not None and asked > info.score_threshold:
        raise ExportError(f"--score-floor {asked:g} is above the model's operating point {info.score_threshold:g}: "
                          f"predict at its default threshold would miss the rocks scoring between them")
    holder.score_thresh = keeping_from(asked)
    return asked


def _quantized_parity_threshold(threshold: float, floor: float | None) -> float:
    """Where INT8 parity starts: it pairs each side's rocks with partners down to SCORE_MARGIN
    below the threshold, so with a floor closer than that it starts higher, where partners that
    INT8 moved below the threshold are still in both graphs."""
    from rockdet.deploy.quantize import SCORE_MARGIN

    return threshold if floor is None else max(threshold, floor + SCORE_MARGIN)


def _quantize(fp32_file: Path, fp32, info: ModelInfo, calibration: Path, files: list[Path], tiles: int | None,
              threshold: float, out: Path) -> QuantizedParity:
    """Replace the FP32 export at ``fp32_file`` by its INT8 form, checked against ``fp32``."""
    from rockdet.deploy import quantize as q

    calibration_tiles = q.calibration_tiles(files, tiles or q.DEFAULT_CALIBRATION_TILES, info.input_size)
    held_apart = q.calibration_tiles(files, q.PARITY_TILES, info.input_size, seed=q.CALIBRATION_SEED + 1)
    int8_file = fp32_file.with_name(fp32_file.name + ".int8.onnx")
    try:
        log.info("quantizing to INT8 on %d tiles of %s", len(calibration_tiles), calibration)
        q.quantize_onnx(fp32_file, int8_file, calibration_tiles, fp32.info)
        images = [parity_image(info.input_size)] + [torch.from_numpy(tile) for tile in held_apart]
        int8 = load_exported(int8_file, "onnx")
        parity = q.check_quantized_parity(fp32, int8, images, threshold)
        if not parity.passed:
            raise ExportError(f"{out}: the INT8 model's parity with FP32 failed: {parity.describe()}; the file "
                              f"was not written (try more --calibration-tiles, or export FP32)")
        q.record_parity(int8_file, int8.info, parity, calibration=str(calibration))
        int8_file.replace(fp32_file)
    finally:
        int8_file.unlink(missing_ok=True)
    return parity


def check_export_path(checkpoint: Path, out: Path, export_format: str) -> None:
    """Refuse, before any work, an ``--out`` that is the checkpoint, that cannot be written, or
    whose suffix is not the format's: predict picks the runtime by suffix, so an ONNX file named
    .ckpt could not be run, and would pass for the checkpoint it may have replaced."""
    refuse_inputs_as_outputs([out], [checkpoint])
    suffixes = ONNX_SUFFIXES if export_format == "onnx" else TORCHSCRIPT_SUFFIXES
    if out.suffix.lower() not in suffixes:
        raise ExportError(f"--out {out}: a {export_format} file is named *{' or *'.join(suffixes)}, which "
                          f"predict needs to run it; try --out {out.with_suffix(suffixes[0]).name}")
    check_output_file(out)


def parity_image(side: int) -> torch.Tensor:
    """A seeded synthetic terrain scene at the training size: rocks, shadows, texture."""
    from rockdet.synthetic.scenes import SceneSpec, generate_scene

    scene = generate_scene(np.random.default_rng(PARITY_SCENE_SEED), SceneSpec(width=side, height=side))
    return torch.from_numpy(np.ascontiguousarray(scene.image)).permute(2, 0, 1).float() / 255.0


class _OneImage(nn.Module):
    """The detector for one image with outputs in a fixed order (torchvision's dict order
    differs between architectures)."""

    def __init__(self, model: nn.Module, with_masks: bool):
        super().__init__()
        self.model, self.with_masks = model, with_masks

    def forward(self, image: torch.Tensor):
        detections = self.model([image])[0]
        outputs = (detections["boxes"], detections["scores"], detections["labels"])
        return outputs + (detections["masks"],) if self.with_masks else outputs


def _export_onnx(model: nn.Module, image: torch.Tensor, path: Path, info: ModelInfo, metadata: dict) -> None:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxruntime: pip install 'rockdet[onnx]'") from None
    outputs = ["boxes", "scores", "labels"] + (["masks"] if info.has_masks else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent shapes are expected
        try:
            one_image = _OneImage(model, info.has_masks).eval()
            torch.onnx.export(one_image, (image,), str(path), opset_version=ONNX_OPSET, dynamo=False,
                              input_names=["image"], output_names=outputs,
                              dynamic_axes={"image": {1: "height", 2: "width"},
                                            **{name: {0: "detections"} for name in outputs}})
        except Exception as exc:  # torch.onnx raises many kinds for an unsupported graph
            raise ExportError(f"{info.arch}: ONNX export failed ({exception_reason(exc)})") from None
    document = onnx.load(str(path))
    entry = document.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    document.doc_string = f"rockdet {info.arch} rock detector"
    onnx.save(document, str(path))


def _export_torchscript(model: nn.Module, path: Path, info: ModelInfo, metadata: dict) -> None:
    try:
        scripted = torch.jit.script(model)
    except Exception as exc:
        raise ExportError(f"{info.arch}: TorchScript export failed ({exception_reason(exc)})") from None
    torch.jit.save(scripted, str(path), _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(metadata)})


def check_parity(reference: nn.Module | Callable, candidate: Callable, image: torch.Tensor,
                 threshold: float) -> Parity:
    """Detections of both at ``threshold``, matched one to one (see the module docstring)."""
    with torch.inference_mode():
        expected = reference([image])[0]
        got = candidate([image])[0]
    ref_boxes, ref_scores = expected["boxes"].float(), expected["scores"].float()
    new_boxes, new_scores = got["boxes"].float(), got["scores"].float()
    if int((ref_scores >= threshold).sum()) < MIN_PARITY_DETECTIONS and len(ref_scores):
        ranked = ref_scores.sort(descending=True).values
        threshold = min(threshold, float(ranked[min(MIN_PARITY_DETECTIONS, len(ranked)) - 1]))
    keep_ref, keep_new = ref_scores >= threshold, new_scores >= threshold
    ref_boxes, ref_scores = ref_boxes[keep_ref], ref_scores[keep_ref]
    new_boxes, new_scores = new_boxes[keep_new], new_scores[keep_new]
    free = torch.ones(len(new_boxes), dtype=torch.bool)
    unmatched, box_error, score_error = 0, 0.0, 0.0
    for box, score in zip(ref_boxes, ref_scores):
        distance = (new_boxes - box).abs().amax(dim=1) if len(new_boxes) else torch.zeros(0)
        candidates = torch.nonzero(free & (distance <= BOX_TOLERANCE_PX) &
                                   ((new_scores - score).abs() <= SCORE_TOLERANCE)).flatten()
        if len(candidates):
            best = candidates[distance[candidates].argmin()]
            free[best] = False
            box_error = max(box_error, float(distance[best]))
            score_error = max(score_error, float((new_scores[best] - score).abs()))
        elif float(score) >= threshold + SCORE_TOLERANCE:
            unmatched += 1
    unmatched += int((free & (new_scores >= threshold + SCORE_TOLERANCE)).sum())
    return Parity(len(ref_boxes), unmatched, box_error, score_error)
