"""Model files, read as (detector, ModelInfo): a rockdet checkpoint (``.ckpt``: Lightning's, with the
optimizer state to resume training) or a model file (``model.pt``: ModelInfo and weights only, a
third of the size, for sharing and predict). Both are read as tensors and plain data only
(``weights_only``), so loading one cannot run code; ``trust`` allows full unpickling of a file
you made yourself, with a warning."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from rockdet.atomic import atomic_path
from rockdet.errors import CheckpointError, exception_reason
from rockdet.models.builder import build_detector
from rockdet.models.info import ModelInfo

log = logging.getLogger(__name__)

#: Key of a model file's metadata (a checkpoint keeps Lightning's ``hyper_parameters``).
MODEL_FILE_KEY = "rockdet_model"
#: Longest detail of a weight mismatch in the one-line error; the whole list goes to the log.
MAX_DETAIL_CHARS = 100


def read_torch_file(path: Path, map_location: str | torch.device = "cpu", trust: bool = False) -> dict:
    """A torch-saved dict, or one CheckpointError line saying why not."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if trust:
        log.warning("%s: loading with full unpickling (trust_checkpoint): the file can run code", path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as exc:
        # torch names the class it refused ("GLOBAL module.name"); anything else is a bad file.
        if trust or "GLOBAL" not in str(exc):
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                                  f"({exc.__class__.__name__})") from None  # its text is torch's advice
        raise CheckpointError(f"{path}: holds Python objects beyond tensors and plain data, and "
                              f"unpickling them could run code; refused. If you made this file, "
                              f"pass --trust-checkpoint (trust_checkpoint=True in Python)") from None
    except Exception as exc:  # torch raises many types for a bad file
        reason = exception_reason(exc, with_type=True, limit=MAX_DETAIL_CHARS)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: checkpoint holds a {type(checkpoint).__name__}, not a dict")
    return checkpoint


def info_of(contents: dict, source: str) -> ModelInfo:
    """The ModelInfo of a loaded checkpoint or model file."""
    if MODEL_FILE_KEY in contents:
        return ModelInfo.from_metadata(contents[MODEL_FILE_KEY], source)
    return ModelInfo.from_hparams(contents.get("hyper_parameters"), source)


def load_model(path: Path | str, map_location: str | torch.device = "cpu",
               trust: bool = False) -> tuple[nn.Module, ModelInfo]:
    """Rebuild the detector a checkpoint or model file holds, in eval mode, with its ModelInfo."""
    path = Path(path)
    contents = read_torch_file(path, map_location, trust)
    info = info_of(contents, str(path))
    state = contents.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a rockdet checkpoint (it holds no weights)")
    model = build_detector(**info.build_arguments())
    try:
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    except RuntimeError as exc:
        log.error("%s: %s", path, exc)  # the full list of mismatches, for whoever needs it
        # torch's first line names the module; the second the first mismatch.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else exception_reason(exc)
        raise CheckpointError(f"{path}: weights do not fit {info.arch} "
                              f"({detail[:MAX_DETAIL_CHARS]}{'...' if len(detail) > MAX_DETAIL_CHARS else ''}"
                              f"; details in the log)") from None
    return model.eval(), info


def write_model_file(path: Path, model: nn.Module, info: ModelInfo) -> Path:
    """model.pt: the ModelInfo and the detector's weights, nothing to resume training with (a
    third of a checkpoint, which keeps the optimizer's two moments per weight)."""
    with atomic_path(path) as temp:
        torch.save({MODEL_FILE_KEY: info.to_metadata(keep_unchosen=True, format="model.pt"),
                    "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, temp)
    return path


def store_model_info(path: Path, info: ModelInfo) -> None:
    """Write ``info`` (e.g. a chosen operating point) into a checkpoint or model file, atomically."""
    contents = read_torch_file(Path(path))
    if MODEL_FILE_KEY in contents:
        contents[MODEL_FILE_KEY] = info.to_metadata(keep_unchosen=True, format="model.pt")
    else:
        contents["hyper_parameters"] = info.to_hparams()
    with atomic_path(path) as temp:
        torch.save(contents, temp)
