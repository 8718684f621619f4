"""What one `rockdet predict` asks for, built once from the command line, and what the run
resolves from it once the checkpoint is loaded. Both are frozen: nothing down the line edits
a setting in place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rockdet.catalog.files import FORMATS
from rockdet.catalog.layout import OutputLayout
from rockdet.errors import RockdetError
from rockdet.models.inference_head import InferenceHead
from rockdet.predict.detect import PredictSettings

#: --camera values besides a YAML file: each product's own label model, or no sizing.
CAMERA_AUTO, CAMERA_NONE = "auto", "none"
#: Formats written once per batch rather than per image: coco, the batch as COCO pre-annotations.
BATCH_FORMATS = ("coco",)
#: Smallest tile the command accepts: below it no detector sees a rock with its context.
MIN_TILE_PX = 32


@dataclass(frozen=True)
class PredictJob:
    checkpoint: Path
    out: Path
    inputs: tuple[str, ...]
    #: ``score_threshold`` None: the checkpoint's eval.score_threshold.
    settings: PredictSettings = field(default_factory=lambda: PredictSettings(score_threshold=None))
    formats: tuple[str, ...] = ("csv", "json")
    overwrite: bool = False
    devices: int | list[int] = 1
    accelerator: str = "auto"
    workers: int = 0
    #: "auto" (each PDS product's own label model; other images unsized), "none", or a camera YAML.
    camera: str = "auto"
    overlay: bool = False
    #: Run the model exactly as trained instead of its faster inference form (same rocks up to
    #: float rounding).
    as_trained: bool = False
    wait_for_lock: bool = False
    trust_checkpoint: bool = False
    #: Height of the ground plane (z, down) in a label model's frame; None: the frame's own
    #: (z = 0 in ROVER_NAV_FRAME and LOCAL_LEVEL_FRAME).
    ground_z: float | None = None
    #: Proposals and detections per tile (PyTorch checkpoints; an export carries its own).
    head: InferenceHead = field(default_factory=InferenceHead)
    #: What runs an exported .onnx file: onnxruntime or openvino.
    runtime: str = "onnxruntime"

    def __post_init__(self) -> None:
        unknown = set(self.formats) - set(FORMATS) - set(BATCH_FORMATS)
        if unknown or "json" not in self.formats:
            raise RockdetError(f"--format: choose from {list(FORMATS) + list(BATCH_FORMATS)} and include json "
                               f"(it marks a catalog complete); got {','.join(self.formats)}")
        if self.ground_z is not None and self.camera != CAMERA_AUTO:
            raise RockdetError(f"--ground-z applies to label camera models (--camera {CAMERA_AUTO}), "
                               f"not --camera {self.camera}")
        settings = self.settings
        if settings.tile is not None and settings.tile < MIN_TILE_PX:
            raise RockdetError(f"--tile {settings.tile}: give a tile size of at least {MIN_TILE_PX} pixels")
        if not 0.0 <= settings.overlap < 1.0:
            raise RockdetError(f"--overlap {settings.overlap}: give a fraction in [0, 1)")
        if settings.batch_size < 1:
            raise RockdetError(f"--batch-size {settings.batch_size}: give at least 1")
        if settings.score_threshold is not None and not 0.0 <= settings.score_threshold <= 1.0:
            raise RockdetError(f"--score-threshold {settings.score_threshold}: give a score in [0, 1]")


@dataclass(frozen=True)
class PredictRun:
    """What the Lightning run and the catalog writer share, resolved from a job and its checkpoint."""

    job: PredictJob
    layout: OutputLayout
    #: The job's settings with the operating threshold filled in.
    settings: PredictSettings
    #: Side of the training images: automatic tiles keep rocks at that scale.
    input_size: int
    with_masks: bool
    #: Recorded in every catalog: checkpoint, thresholds, tiling, camera.
    context: dict[str, Any]
    #: Fills the metric columns: ``sizer(rocks, image)`` returns what the catalog JSON records,
    #: or None for an image it cannot size (no camera model).
    sizer: Callable | None = None
