"""What a trained detector is, as one typed record: its architecture and how to build it, the image
size it was trained at, its classes, its operating point and how that was chosen, the head an
export fixed, and which rockdet wrote it.

This module is the one reader of a checkpoint's saved settings (Lightning's ``hyper_parameters``)
and of an export's metadata, and the one writer of both; nothing else reads them by key. Files of
rockdet 0.1.0 (no schema version) read as schema 1; a file of a newer schema is refused with one
line naming its version.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from rockdet.errors import CheckpointError

log = logging.getLogger(__name__)

#: Version of the layout below; a reader refuses files of a newer one.
SCHEMA_VERSION = 1
#: The operating point while ``eval.score_threshold: auto`` has not chosen one (validation during
#: training, or a run stopped before its end).
PROVISIONAL_THRESHOLD = 0.5
#: Rock classes of a file that does not name them (hand-made): what training reads by default.
DEFAULT_CLASS_NAMES = ("rock", "boulder")
#: Background + rock; a hardware class (data.hardware_classes) makes three.
ROCK_CLASSES_WITH_BACKGROUND = 2
#: Keys of the detector's settings that say where weights came from, not how to build it.
WEIGHT_SOURCES = ("weights", "weights_backbone")
#: Value of ``eval.score_threshold`` that asks training to choose the operating point.
AUTO = "auto"


@dataclass(frozen=True)
class ThresholdChoice:
    """How ``eval.score_threshold: auto`` chose the operating point (rockdet.evaluation.operating_point)."""

    rule: str  # "best_f1 (dense labels)" | "recall_target (sparse labels)" | "fallback"
    score_threshold: float
    precision: float
    recall: float
    f1: float
    sources: list[str]
    note: str = ""
    measure: str = "box precision/recall"

    @classmethod
    def read(cls, values: Any) -> ThresholdChoice | None:
        if not isinstance(values, Mapping):
            return None
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        try:
            return cls(**known)
        except TypeError:  # a record missing fields (hand-edited): not worth failing the model
            return None


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    #: Keyword arguments of models.build_detector besides ``arch`` (sizes, anchors, options, classes).
    detector: Mapping[str, Any]
    #: Side of the training images in pixels (crops included): tiles of this size keep rocks at
    #: the scale the model learned.
    input_size: int
    #: Categories of the training labels that were rocks.
    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    #: The operating point (None: ``auto`` was asked and never chosen).
    score_threshold: float | None = None
    threshold_choice: ThresholdChoice | None = None
    iou_threshold: float = 0.5
    #: Proposals and detections per tile fixed in an exported file (None: a checkpoint's own).
    head: Mapping[str, int] | None = None
    rockdet_version: str = "0.1.0"
    schema_version: int = SCHEMA_VERSION
    #: The training settings a checkpoint also carries (optimizer, scheduler, evaluation): kept
    #: so a checkpoint written again (its operating point stored) loses none of them.
    training: Mapping[str, Any] = field(default_factory=dict)
    #: How an exported file was quantized (method, calibration, parity with FP32); None: FP32.
    quantization: Mapping[str, Any] | None = None
    #: The lowest score an exported graph returns (``rockdet export --score-floor``): it runs no
    #: catalog below it. None: a checkpoint, or an export that did not record it.
    score_floor: float | None = None

    # --- what people and code ask of a model ---------------------------------------------------
    @property
    def has_masks(self) -> bool:
        return self.arch.startswith("maskrcnn")

    @property
    def detections_per_image(self) -> int:
        return int(self.detector.get("detections_per_image", 300))

    @property
    def operating_threshold(self) -> float:
        """The score above which a detection is a rock; an unchosen ``auto`` falls back, with a warning."""
        if self.score_threshold is None:
            log.warning("the model's score_threshold: auto was never chosen (training did not finish); "
                        "using %s", PROVISIONAL_THRESHOLD)
            return PROVISIONAL_THRESHOLD
        return self.score_threshold

    def build_arguments(self) -> dict[str, Any]:
        """Everything models.build_detector needs to rebuild this detector (weights aside)."""
        return {"arch": self.arch, **{k: v for k, v in self.detector.items() if k not in WEIGHT_SOURCES}}

    def with_threshold(self, choice: ThresholdChoice) -> ModelInfo:
        evaluation = {**dict(self.training.get("evaluation", {})), "score_threshold": choice.score_threshold,
                      "threshold_choice": asdict(choice)}
        return replace(self, score_threshold=choice.score_threshold, threshold_choice=choice,
                       training={**self.training, "evaluation": evaluation})

    def describe(self) -> str:
        threshold = "unchosen" if self.score_threshold is None else f"{self.score_threshold:g}"
        floor = f", scores from {self.score_floor:g}" if self.score_floor is not None else ""
        return f"{self.arch}, input {self.input_size} px, score threshold {threshold}{floor}"

    # --- checkpoints (Lightning hyper-parameters) ----------------------------------------------
    @classmethod
    def from_hparams(cls, hparams: Any, source: str) -> ModelInfo:
        """The model a rockdet checkpoint holds, from the settings training saved in it."""
        if not isinstance(hparams, Mapping):
            raise CheckpointError(f"{source}: not a rockdet checkpoint (no model settings saved in it)")
        _check_schema(hparams, source)
        model = hparams.get("model")
        if not isinstance(model, Mapping) or not isinstance(model.get("arch"), str):
            raise CheckpointError(f"{source}: not a rockdet checkpoint (no model settings saved in it)")
        _check_detector_settings(model, source)
        evaluation = hparams.get("evaluation") if isinstance(hparams.get("evaluation"), Mapping) else {}
        return cls(arch=model["arch"], detector={k: v for k, v in model.items() if k != "arch"},
                   input_size=_input_size(hparams.get("input_size"), model, source),
                   class_names=_class_names(hparams.get("rock_classes")),
                   score_threshold=_threshold(evaluation.get("score_threshold", PROVISIONAL_THRESHOLD), source),
                   threshold_choice=ThresholdChoice.read(evaluation.get("threshold_choice")),
                   iou_threshold=_iou(evaluation.get("iou_threshold"), source),
                   rockdet_version=str(hparams.get("rockdet_version", "0.1.0")),
                   training={k: hparams[k] for k in ("optimizer", "scheduler", "evaluation") if k in hparams})

    def to_hparams(self) -> dict[str, Any]:
        """The settings a checkpoint saves (what training writes, with this operating point)."""
        evaluation = {**dict(self.training.get("evaluation", {})), "iou_threshold": self.iou_threshold,
                      "score_threshold": AUTO if self.score_threshold is None else self.score_threshold}
        if self.threshold_choice is not None:
            evaluation["threshold_choice"] = asdict(self.threshold_choice)
        return {**{k: v for k, v in self.training.items() if k != "evaluation"},
                "model": {"arch": self.arch, **self.detector}, "evaluation": evaluation,
                "rock_classes": list(self.class_names), "input_size": self.input_size,
                "rockdet_version": self.rockdet_version, "schema_version": self.schema_version}

    # --- exported files and model.pt -----------------------------------------------------------
    @classmethod
    def from_metadata(cls, metadata: Any, source: str) -> ModelInfo:
        """The model an exported file or a model.pt describes (rockdet 0.1.0 exports included)."""
        if not isinstance(metadata, Mapping) or not isinstance(metadata.get("model"), Mapping):
            raise CheckpointError(f"{source}: carries no rockdet metadata; export it with `rockdet export`")
        _check_schema(metadata, source)
        evaluation = metadata.get("evaluation") if isinstance(metadata.get("evaluation"), Mapping) else {}
        missing = [key for key, present in (("input_size", "input_size" in metadata),
                                            ("class_names", "class_names" in metadata),
                                            ("score_threshold", "score_threshold" in metadata or
                                             "score_threshold" in evaluation)) if not present]
        if missing:
            raise CheckpointError(f"{source}: its rockdet metadata lacks {missing}; re-export it with `rockdet export`")
        model = metadata["model"]
        if not isinstance(model.get("arch"), str):
            raise CheckpointError(f"{source}: rockdet metadata 'model' must name its arch; re-export it")
        threshold = metadata.get("score_threshold", evaluation.get("score_threshold"))
        head = metadata.get("head")
        if head is not None and not (isinstance(head, Mapping) and all(_is_count(v) for v in head.values())):
            raise CheckpointError(f"{source}: rockdet metadata 'head' must map to counts, got {str(head)[:80]!r}")
        names = metadata.get("class_names")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise CheckpointError(f"{source}: rockdet metadata 'class_names' must be a list of names, got "
                                  f"{str(names)[:80]!r}; re-export it")
        return cls(arch=model["arch"], detector={k: v for k, v in model.items() if k != "arch"},
                   input_size=_input_size(metadata.get("input_size"), model, source),
                   class_names=tuple(names), score_threshold=_threshold(threshold, source),
                   threshold_choice=ThresholdChoice.read(evaluation.get("threshold_choice")),
                   iou_threshold=_iou(evaluation.get("iou_threshold"), source),
                   head=dict(head) if head is not None else None,
                   rockdet_version=str(metadata.get("rockdet_version", "0.1.0")),
                   training={"evaluation": dict(evaluation)} if evaluation else {},
                   quantization=dict(quantization) if isinstance(quantization := metadata.get("quantization"), Mapping)
                   else None,
                   score_floor=_score_floor(metadata.get("score_floor"), source))

    def to_metadata(self, keep_unchosen: bool = False, **extra: Any) -> dict[str, Any]:
        """The metadata an export or a model.pt carries (``extra``: format, opset, ...), in the
        keys rockdet 0.1.0 wrote. An unchosen operating point is written as the provisional 0.5
        (a number, as 0.1.0 readers need) unless ``keep_unchosen`` (model.pt) keeps it ``auto``."""
        threshold = self.operating_threshold if not keep_unchosen or self.score_threshold is not None else AUTO
        evaluation = {**dict(self.training.get("evaluation", {})), "iou_threshold": self.iou_threshold,
                      "score_threshold": threshold}
        evaluation.pop("threshold_choice", None)
        if self.threshold_choice is not None:
            evaluation["threshold_choice"] = asdict(self.threshold_choice)
        return {**extra, "schema_version": self.schema_version, "rockdet_version": self.rockdet_version,
                "arch": self.arch, "input_size": self.input_size, "score_threshold": threshold,
                "class_names": list(self.class_names),
                "model": {"arch": self.arch, **{k: v for k, v in self.detector.items() if k not in WEIGHT_SOURCES}},
                "evaluation": evaluation, **({"head": dict(self.head)} if self.head is not None else {}),
                **({"quantization": dict(self.quantization)} if self.quantization is not None else {}),
                **({"score_floor": self.score_floor} if self.score_floor is not None else {})}


def _check_schema(values: Mapping, source: str) -> None:
    version = values.get("schema_version", 1)
    if not _is_count(version):
        raise CheckpointError(f"{source}: schema_version {str(version)[:40]!r} is not a version number")
    if version > SCHEMA_VERSION:
        from rockdet import __version__

        raise CheckpointError(f"{source}: written by rockdet {values.get('rockdet_version', '?')} (model schema "
                              f"{version}); this rockdet {__version__} reads schema {SCHEMA_VERSION} at most: "
                              f"upgrade rockdet")


def _check_detector_settings(model: Mapping, source: str) -> None:
    """Every saved detector setting is one models.build_detector takes."""
    import inspect

    from rockdet.models.builder import build_detector

    unknown = sorted(set(model) - set(inspect.signature(build_detector).parameters))
    if unknown:
        raise CheckpointError(f"{source}: unknown model setting(s) {unknown}; was it made by a newer rockdet, "
                              f"or edited by hand?")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _input_size(value: Any, model: Mapping, source: str) -> int:
    """The training image side; 0 or missing (a run that could not measure it, e.g. generated
    scenes only) means the model's own input size."""
    size = value or model.get("min_size")
    if isinstance(size, float) and size.is_integer():
        size = int(size)
    if not _is_count(size):
        raise CheckpointError(f"{source}: input_size {str(size)[:40]!r} is not a positive integer")
    return int(size)


def _iou(value: Any, source: str) -> float:
    if value is None:
        return 0.5
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise CheckpointError(f"{source}: iou_threshold {str(value)[:40]!r} is not in (0, 1]")
    return float(value)


def _class_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)) and value and all(isinstance(name, str) for name in value):
        return tuple(value)
    return DEFAULT_CLASS_NAMES


def _score_floor(value: Any, source: str) -> float | None:
    if value is None:
        return None
    if value == AUTO:  # a floor is always a number
        raise CheckpointError(f"{source}: score_floor {value!r} is not a score in 0..1")
    return _threshold(value, source, "score_floor")


def _threshold(value: Any, source: str, key: str = "score_threshold") -> float | None:
    if value == AUTO:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise CheckpointError(f"{source}: {key} {str(value)[:40]!r} is not a score in 0..1")
    return float(value)
