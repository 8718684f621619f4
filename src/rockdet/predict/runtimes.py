"""Where a detector runs: the PyTorch checkpoint, or an exported file (ONNX Runtime or OpenVINO for
.onnx, TorchScript).

Every runtime is a callable over a list of tile tensors [3, H, W] returning torchvision's output
dicts (boxes, scores, labels[, masks]), so tiling, merging, catalogs, resume and camera sizing
stay one code path (inference.run_model) whatever runs the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rockdet.errors import CheckpointError, exception_reason

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".torchscript", ".ts", ".pt")
#: ONNX Runtime providers tried in order; the CUDA one only where that build is installed.
ONNX_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
OUTPUT_NAMES = ("boxes", "scores", "labels", "masks")
#: Runtimes for an exported .onnx file (predict --runtime).
ONNX_RUNTIMES = ("onnxruntime", "openvino")


def exported_format(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in TORCHSCRIPT_SUFFIXES:
        return "torchscript"
    return None


class OnnxDetector(nn.Module):
    """An exported detector in ONNX Runtime, called like the torchvision model (one session run
    per tile: the graph takes one image of any size)."""

    def __init__(self, session, metadata: dict[str, Any]):
        super().__init__()
        self.session, self.metadata = session, metadata
        self.input_name = session.get_inputs()[0].name
        self.output_names = [output.name for output in session.get_outputs()]

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        results = []
        for image in images:
            values = self.session.run(None, {self.input_name: image.detach().float().cpu().numpy()})
            results.append({name: torch.from_numpy(np.asarray(value)) for name, value in zip(self.output_names, values)})
        return results

    def describe(self) -> str:
        return f"ONNX Runtime {self.session.get_providers()[0]}"


class OpenVinoDetector(nn.Module):
    """An exported detector compiled by OpenVINO for the CPU (Intel's runtime; on this project's
    CPU it ran the demo detector 1.8x faster than ONNX Runtime, docs/BENCHMARKS.md)."""

    def __init__(self, compiled, metadata: dict[str, Any]):
        super().__init__()
        self.compiled, self.metadata = compiled, metadata
        self.output_names = [output.get_any_name() for output in compiled.outputs]

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        results = []
        for image in images:
            values = self.compiled([image.detach().float().cpu().numpy()])
            results.append({name: torch.from_numpy(np.asarray(values[output]))
                            for name, output in zip(self.output_names, self.compiled.outputs)})
        return results

    def describe(self) -> str:
        return "OpenVINO CPU"


class TorchScriptDetector(nn.Module):
    """A scripted torchvision detector; scripted detection models return (losses, detections)."""

    def __init__(self, module: torch.jit.ScriptModule, metadata: dict[str, Any], path: Path | None = None):
        super().__init__()
        self.module, self.metadata, self.path = module, metadata, path

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        output = self.module(images)
        output = output[1] if isinstance(output, tuple) else output
        if not isinstance(output, list) or not all(isinstance(d, dict) and {"boxes", "scores", "labels"} <= set(d)
                                                   for d in output):
            raise CheckpointError(f"{self.path or 'TorchScript model'}: returns "
                                  f"{type(output).__name__}, not a detector's boxes, scores and labels per image")
        return output

    def describe(self) -> str:
        return "TorchScript"


def load_exported(path: Path | str, export_format: str | None = None, threads: int | None = None,
                  runtime: str = "onnxruntime") -> tuple[nn.Module, dict[str, Any]]:
    """(detector, hparams as a checkpoint would give them) from an exported file; an .onnx file
    runs in ``runtime`` (onnxruntime or openvino)."""
    path = Path(path)
    export_format = export_format or exported_format(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    if runtime == "openvino" and export_format != "onnx":
        raise CheckpointError(f"{path}: --runtime openvino runs exported .onnx files, and this is "
                              f"{export_format or 'not an exported model'}; export it with --format onnx")
    if export_format == "onnx" and runtime == "openvino":
        detector = _load_openvino(path, threads)
    elif export_format == "onnx":
        detector = _load_onnx(path, threads)
    elif export_format == "torchscript":
        extra = {"rockdet.json": ""}
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable TorchScript file ({exception_reason(exc)})") from None
        detector = TorchScriptDetector(module.eval(), _metadata(path, extra["rockdet.json"]), path)
    else:
        raise CheckpointError(f"{path}: unknown model file type; give a .ckpt, .onnx or .torchscript file")
    return detector.eval(), _hparams(detector.metadata)


def _load_onnx(path: Path, threads: int | None) -> OnnxDetector:
    try:
        import onnxruntime
    except ImportError:
        raise CheckpointError(f"{path}: running ONNX models needs ONNX Runtime: pip install 'rockdet[onnx]'") from None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: its shape-inference chatter would bury ours
    providers = [p for p in ONNX_PROVIDERS if p in onnxruntime.get_available_providers()]
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable ONNX model ({exception_reason(exc)})") from None
    raw = session.get_modelmeta().custom_metadata_map.get("rockdet", "")
    metadata = _metadata(path, raw)
    _check_graph(path, [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()],
                 metadata)
    return OnnxDetector(session, metadata)


def _load_openvino(path: Path, threads: int | None) -> OpenVinoDetector:
    try:
        import onnx
        import openvino
    except ImportError:
        raise CheckpointError(f"{path}: running ONNX models in OpenVINO needs it: "
                              f"pip install 'rockdet[openvino]'") from None
    try:
        document = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable ONNX model ({exception_reason(exc)})") from None
    raw = next((entry.value for entry in document.metadata_props if entry.key == "rockdet"), "")
    metadata = _metadata(path, raw)
    core = openvino.Core()
    config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
    try:
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as exc:
        raise CheckpointError(f"{path}: OpenVINO cannot compile it ({exception_reason(exc)})") from None
    _check_graph(path, [i.get_any_name() for i in compiled.inputs],
                 [o.get_any_name() for o in compiled.outputs], metadata)
    return OpenVinoDetector(compiled, metadata)


#: What rockdet's metadata must hold, each with the check its value must pass and what it means.
METADATA_FIELDS = {
    "model": (lambda v: isinstance(v, dict) and isinstance(v.get("arch"), str), "a mapping with the arch"),
    "input_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
    "evaluation": (lambda v: isinstance(v, dict) and _is_score(v.get("score_threshold")),
                   "a mapping with a score_threshold in 0..1"),
    "class_names": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of names"),
}


def _is_score(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _metadata(path: Path, raw: str | bytes) -> dict[str, Any]:
    try:
        metadata = json.loads(raw or "null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        metadata = None
    if not isinstance(metadata, dict) or "model" not in metadata:
        raise CheckpointError(f"{path}: carries no rockdet metadata; export it with `rockdet export`")
    missing = [key for key in METADATA_FIELDS if key not in metadata]
    if missing:
        raise CheckpointError(f"{path}: its rockdet metadata lacks {missing}; re-export it with `rockdet export`")
    for key, (valid, meaning) in METADATA_FIELDS.items():
        if not valid(metadata[key]):
            raise CheckpointError(f"{path}: rockdet metadata '{key}' must be {meaning}, got "
                                  f"{str(metadata[key])[:80]!r}; re-export it with `rockdet export`")
    return metadata


def _check_graph(path: Path, inputs: list[str], outputs: list[str], metadata: dict[str, Any]) -> None:
    """The graph is a rockdet export: one image in, boxes, scores and labels out (by name: the
    detector reads its outputs by name), whatever metadata was copied into it."""
    # models.archs.has_masks, without importing the model builders into an ONNX-only install
    needed = ["boxes", "scores", "labels"] + (["masks"] if metadata["model"]["arch"].startswith("maskrcnn") else [])
    missing = [name for name in needed if name not in outputs]
    if len(inputs) != 1 or missing:
        raise CheckpointError(f"{path}: not a rockdet detector graph (inputs {inputs}, outputs {outputs}; "
                              f"expected one image input and outputs {needed}); export it with `rockdet export`")


def _hparams(metadata: dict[str, Any]) -> dict[str, Any]:
    return {"model": metadata["model"], "input_size": metadata["input_size"],
            "evaluation": metadata["evaluation"], "rock_classes": metadata["class_names"],
            "exported": {k: metadata[k] for k in ("format", "rockdet_version") if k in metadata}}
