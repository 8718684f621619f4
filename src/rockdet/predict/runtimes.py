"""Where a detector runs: PyTorch (a checkpoint or model.pt), or an exported file (ONNX Runtime or
OpenVINO for .onnx, TorchScript).

Every runtime is a Detector: a module called over a list of tile tensors [3, H, W] that returns
torchvision's output dicts (boxes, scores, labels[, masks]), with the model's ModelInfo, the head
it runs with and how it runs. Tiling, merging, catalogs, resume and camera sizing stay one code
path (detect.run_model) whatever runs the model.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rockdet.errors import CheckpointError, SettingsError, exception_reason
from rockdet.models.info import ModelInfo

log = logging.getLogger(__name__)

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".torchscript", ".ts")
#: What may run an exported .onnx file; "auto" picks the fastest installed (choose_runtime).
RUNTIMES = ("auto", "onnxruntime", "openvino")
#: ONNX Runtime providers tried in order; the CUDA one only where that build is installed.
ONNX_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
#: Where an export keeps rockdet's metadata: an ONNX metadata_props key, a TorchScript extra file.
METADATA_KEY = "rockdet"
TORCHSCRIPT_METADATA_FILE = "rockdet.json"


class Detector(nn.Module):
    """A detector ready to run over tiles, whatever runs it."""

    def __init__(self, info: ModelInfo, head: dict[str, int] | None = None):
        super().__init__()
        self.info = info
        #: Proposals and detections per tile it runs with (recorded in every catalog).
        self.head = dict(head or {})
        #: Which runtime runs it and why (recorded in every catalog and the summary).
        self.runtime: dict[str, str] = {"runtime": "pytorch", "chosen": "a checkpoint runs in PyTorch"}

    def describe(self) -> str:
        """How it runs, for catalogs and the summary (e.g. "ONNX Runtime CPUExecutionProvider")."""
        raise NotImplementedError


class TorchDetector(Detector):
    """A torchvision detector in PyTorch, in its inference form unless run as trained."""

    def __init__(self, model: nn.Module, info: ModelInfo, form: str, head: dict[str, int]):
        super().__init__(info, head)
        self.model, self.form = model, form

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.model(images)

    def describe(self) -> str:
        return self.form


def exported_format(path: Path) -> str | None:
    """"onnx" or "torchscript" for an exported file, None for a checkpoint or model file. A .pt
    is a TorchScript archive (rockdet 0.1.0 exported them so) when it holds scripted code."""
    suffix = Path(path).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in TORCHSCRIPT_SUFFIXES:
        return "torchscript"
    if suffix == ".pt" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for name in archive.namelist()):
                return "torchscript"
    return None


def choose_runtime(path: Path, runtime: str, device: str = "auto") -> tuple[str, str]:
    """The runtime an exported .onnx file runs in, and why: ``auto`` takes OpenVINO where it is
    installed and the model runs on the CPU (in BF16 on CPUs that have it, the recipe's detector
    ran about 3x faster per tile than in ONNX Runtime here, docs/BENCHMARKS.md issue 22), else
    ONNX Runtime (and its CUDA provider on a GPU)."""
    if runtime != "auto":
        return runtime, "asked for (--runtime)"
    if exported_format(path) != "onnx":
        return "onnxruntime", "auto"
    if str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "onnxruntime", "auto: a GPU is in use, where ONNX Runtime's CUDA provider runs"
    if importlib.util.find_spec("openvino") is None:
        return "onnxruntime", "auto: OpenVINO is not installed (pip install 'rockdet[openvino]' runs it faster)"
    return "openvino", "auto: the fastest runtime measured on CPU (docs/BENCHMARKS.md, issue 22)"


def load_detector(path: Path | str, runtime: str = "auto", trust: bool = False, as_trained: bool = False,
                  proposals: int | None = None, detections: int | None = None, threads: int | None = None,
                  device: str = "auto") -> Detector:
    """The detector a file holds, ready to run: a checkpoint or model.pt in PyTorch (its
    inference form unless ``as_trained``), an exported .torchscript in TorchScript, an .onnx in
    ``runtime`` (auto, onnxruntime or openvino; see choose_runtime). ``proposals``/``detections``
    set the head per tile of a PyTorch model; an export's head was fixed when it was exported."""
    path = Path(path)
    if runtime not in RUNTIMES:
        raise SettingsError("runtime", f"{runtime!r}: choose one of {list(RUNTIMES)}")
    if exported_format(path) is not None:
        if proposals is not None or detections is not None:
            raise SettingsError("proposals" if proposals is not None else "detections_per_tile",
                                f"{path.name} is an exported model, whose head is fixed at export; pass it "
                                f"to `rockdet export` instead")
        chosen, why = choose_runtime(path, runtime, device)
        detector = load_exported(path, threads=threads, runtime=chosen)
        if exported_format(path) == "onnx":
            detector.runtime["chosen"] = why
        return detector
    if runtime not in ("auto", "onnxruntime"):
        raise SettingsError("runtime", f"{runtime} runs exported .onnx files; export {path.name} first with "
                                       f"`rockdet export`")
    from rockdet.models import load_model, to_inference_form
    from rockdet.models.inference_head import InferenceHead

    model, info = load_model(path, trust=trust)
    head = InferenceHead(proposals, detections).apply(model)
    form = "as trained" if as_trained else to_inference_form(model).describe()
    return TorchDetector(model, info, form, head)


class OnnxDetector(Detector):
    """An exported detector in ONNX Runtime, called like the torchvision model (one session run
    per tile: the graph takes one image of any size)."""

    def __init__(self, session, info: ModelInfo):
        super().__init__(info, info.head)
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = [output.name for output in session.get_outputs()]

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        results = []
        for image in images:
            values = self.session.run(None, {self.input_name: image.detach().float().cpu().numpy()})
            results.append({name: torch.from_numpy(np.asarray(value)) for name, value in zip(self.output_names, values)})
        return results

    def describe(self) -> str:
        return f"ONNX Runtime {self.session.get_providers()[0]}{quantized(self.info)}"


def quantized(info: ModelInfo) -> str:
    """", INT8 weights" for a quantized export (its convolutions and FC layers run in INT8)."""
    return ", INT8 weights" if info.quantization else ""


class TorchScriptDetector(Detector):
    """A scripted torchvision detector; scripted detection models return (losses, detections)."""

    def __init__(self, module: torch.jit.ScriptModule, info: ModelInfo, path: Path | None = None):
        super().__init__(info, info.head)
        self.module, self.path = module, path

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
                  runtime: str = "onnxruntime", fixed_size: bool = True) -> Detector:
    """The detector of an exported file; an .onnx file runs in ``runtime`` (onnxruntime, openvino
    or auto). ``fixed_size=False`` runs every tile on OpenVINO's size-free graph (OpenVinoDetector)."""
    path = Path(path)
    export_format = export_format or exported_format(path)
    if runtime == "auto":
        runtime = choose_runtime(path, runtime, "cpu")[0]
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    if runtime == "openvino" and export_format != "onnx":
        raise SettingsError("runtime", f"openvino runs exported .onnx files, and {path.name} is "
                                       f"{export_format or 'not an exported model'}; export it as onnx")
    if export_format == "onnx" and runtime == "openvino":
        from rockdet.predict.openvino import load_openvino

        detector = load_openvino(path, threads, fixed_size)
    elif export_format == "onnx":
        detector = _load_onnx(path, threads)
    elif export_format == "torchscript":
        extra = {TORCHSCRIPT_METADATA_FILE: ""}
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable TorchScript file ({exception_reason(exc)})") from None
        detector = TorchScriptDetector(module.eval(), exported_info(path, extra[TORCHSCRIPT_METADATA_FILE]), path)
    else:
        raise CheckpointError(f"{path}: unknown model file type; give a .ckpt, .onnx or .torchscript file")
    detector.runtime = {"runtime": runtime, "chosen": "asked for"} if export_format == "onnx" else \
        {"runtime": "torchscript", "chosen": "the file is TorchScript"}
    return detector.eval()


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
    info = exported_info(path, session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, ""))
    check_graph(path, [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()], info)
    return OnnxDetector(session, info)


def exported_info(path: Path, raw: str | bytes) -> ModelInfo:
    try:
        metadata = json.loads(raw or "null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        metadata = None
    return ModelInfo.from_metadata(metadata, str(path))


def check_graph(path: Path, inputs: list[str], outputs: list[str], info: ModelInfo) -> None:
    """The graph is a rockdet export: one image in, boxes, scores and labels out (by name: the
    detector reads its outputs by name), whatever metadata was copied into it."""
    needed = ["boxes", "scores", "labels"] + (["masks"] if info.has_masks else [])
    missing = [name for name in needed if name not in outputs]
    if len(inputs) != 1 or missing:
        raise CheckpointError(f"{path}: not a rockdet detector graph (inputs {inputs}, outputs {outputs}; "
                              f"expected one image input and outputs {needed}); export it with `rockdet export`")
