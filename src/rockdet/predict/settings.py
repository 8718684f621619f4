"""How rocks are found, sized and written: one settings object for a Predictor and for
`rockdet predict`, given by field name and checked when it is made. A bad value is one
SettingsError naming the field (the command line names its flag instead)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rockdet.catalog.catalog import DEFAULT_FORMATS
from rockdet.catalog.files import FORMATS
from rockdet.errors import SettingsError
from rockdet.typed_yaml import KeyProblem, first_problem

#: Smallest tile accepted: below it no detector sees a rock with its context.
MIN_TILE_PX = 32
#: Tiles per forward pass unless set: on a CPU batches beyond a few tiles run slower per tile
#: (cache pressure; docs/BENCHMARKS.md); a GPU wants large batches.
CPU_TILE_BATCH = 4
GPU_TILE_BATCH = 16
#: ``camera`` values besides a YAML file: each PDS product's own label model, or no sizing.
CAMERA_AUTO, CAMERA_NONE = "auto", "none"
#: Devices: auto, cpu, cuda or cuda:N.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda|cuda:\d+")


class PredictSettings(BaseModel):
    """Every setting of a prediction; the defaults are what `rockdet predict` does."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # --- finding rocks -----------------------------------------------------------------------
    #: The operating point; None: the model's own (chosen at training, carried by its file).
    score_threshold: float | None = Field(None, ge=0.0, le=1.0)
    #: Tile side in pixels; None tiles automatically at the model's training image size.
    tile: int | None = Field(None, ge=MIN_TILE_PX)
    overlap: float = Field(0.2, ge=0.0, lt=1.0)
    #: Tiles per forward pass; None: CPU_TILE_BATCH on a CPU, GPU_TILE_BATCH on a GPU.
    tile_batch: int | None = Field(None, ge=1)
    #: RPN proposals and detections kept per tile (None: the model's own).
    proposals: int | None = Field(None, ge=1)
    detections_per_tile: int | None = Field(None, ge=1)
    merge_threshold: float = Field(0.5, gt=0.0, le=1.0)
    merge_metric: Literal["ios", "iou"] = "ios"
    merge_method: Literal["nmm", "nms"] = "nmm"
    #: Also run the whole (downscaled) image once, for rocks larger than a tile.
    full_image_pass: bool = False
    #: Test-time augmentation: "flip" also runs each tile mirrored and fuses the two views, so a
    #: detection both views agree on ranks higher (rockdet.predict.flip); twice the model's work.
    tta: Literal["none", "flip"] = "none"
    #: One rock, one row: of two detections one of which lies at least this much inside the
    #: other (intersection over the smaller box), only the higher-scoring stays. None keeps both.
    nested_threshold: float | None = Field(0.8, gt=0.0, le=1.0)
    #: Featureless black (sky, no-data borders) holds no rocks: a detection with at least
    #: ``sky_fraction`` of its pixels darker than ``sky_level`` (of 255) is dropped; None keeps it.
    sky_level: int = Field(12, ge=0, le=255)
    sky_fraction: float | None = Field(0.9, gt=0.0, le=1.0)
    #: The catalog's completeness limit: rocks whose ``diameter_px`` is below it are left out
    #: (None keeps every size). Below some size a detector's rocks are mostly pebbles, shadows and
    #: texture that no labeller marks: the Mars Mastcam masks mark rocks from about 15-20 px and
    #: the recipe's boxes under 16 px there lie on rock pixels 31 % of the time (docs/BENCHMARKS.md).
    #: Off by default: the Chang'e labels mark rocks down to 7 px. Boxes are judged before the
    #: tiles' merge and the nested rule (by the most their row could measure), so a small part
    #: that outscores its whole rock cannot take the rock with it; a part cut by a tile border
    #: waits until it has grown into its rock. Then each row is judged by its own diameter_px.
    min_diameter_px: float | None = Field(None, gt=0.0)
    #: Where the camera geometry is known, leave out detections whose ground contact lies above
    #: the ground plane's horizon (counted in the catalog as ``left_out_above_horizon``). Off by
    #: default: on a slope the terrain rises above that horizon, and a real MER Navcam frame of
    #: Husband Hill has 12 true rocks there (docs/BENCHMARKS.md). Kept rows are flagged
    #: ``above_horizon`` and unsized.
    drop_above_horizon: bool = False

    # --- running the model ---------------------------------------------------------------------
    #: auto, cpu, cuda or cuda:N.
    device: str = "auto"
    #: Devices of a batch run (DDP, one process each; on the CPU, processes over gloo).
    devices: int = Field(1, ge=1)
    #: Machines of a batch run, started by the cluster (SLURM, torchrun), ``devices`` on each.
    num_nodes: int = Field(1, ge=1)
    #: What runs an exported .onnx file: auto takes OpenVINO when installed and on the CPU (the
    #: fastest measured), else ONNX Runtime; the catalogs and summary say which and why.
    runtime: Literal["auto", "onnxruntime", "openvino"] = "auto"
    #: Run a checkpoint exactly as trained instead of its faster inference form (same rocks up
    #: to float rounding).
    as_trained: bool = False
    #: Load a checkpoint holding Python objects beyond tensors (unpickling can run code).
    trust_checkpoint: bool = False

    # --- sizing rocks ----------------------------------------------------------------------------
    #: "auto" (each PDS product's own label model; other images unsized), "none", or a camera YAML.
    camera: str = CAMERA_AUTO
    #: Height of the ground plane (z, down) in a label model's frame; None: the frame's own.
    ground_z: float | None = None

    # --- what a batch writes ---------------------------------------------------------------------
    #: Catalog formats written per image (csv, json, parquet); coco adds the batch's rocks as one
    #: COCO file of pre-annotations.
    formats: tuple[Literal["csv", "json", "parquet", "coco"], ...] = DEFAULT_FORMATS
    overlay: bool = False
    overwrite: bool = False
    #: On resume, hash every finished input instead of trusting the journal's sizes and times.
    verify: bool = False
    #: Image-decoding worker processes.
    workers: int = Field(0, ge=0)
    #: Wait for another run writing to the same output folder instead of refusing.
    wait_for_lock: bool = False
    #: "K/N": catalogue only every N-th input from the K-th (independent array jobs into one
    #: --out); the batch files are written by a run without a shard once all N have finished.
    shard: str | None = None

    @field_validator("shard")
    @classmethod
    def _shard_k_of_n(cls, shard: str | None) -> str | None:
        if shard is None:
            return None
        k, _, n = shard.partition("/")
        if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
            raise ValueError(f"give K/N with 1 <= K <= N (e.g. 3/8), got {shard!r}")
        return f"{int(k)}/{int(n)}"

    @property
    def shard_of(self) -> tuple[int, int] | None:
        """(K, N) of ``shard``, or None."""
        if self.shard is None:
            return None
        k, n = self.shard.split("/")
        return int(k), int(n)

    @field_validator("camera", mode="before")
    @classmethod
    def _camera_as_text(cls, camera: Any) -> Any:
        return str(camera) if isinstance(camera, Path) else camera

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not DEVICE_PATTERN.fullmatch(device):
            raise ValueError(f"choose auto, cpu, cuda or cuda:N, got {device!r}")
        return device

    @model_validator(mode="after")
    def _consistent(self) -> PredictSettings:
        if "json" not in self.formats:
            raise KeyProblem("formats", f"include json (it marks a catalog complete); got {','.join(self.formats)}")
        if self.ground_z is not None and self.camera != CAMERA_AUTO:
            raise KeyProblem("ground_z", f"applies to label camera models (camera {CAMERA_AUTO}), not camera "
                                         f"{self.camera}")
        return self

    @classmethod
    def of(cls, **values: Any) -> PredictSettings:
        """Settings from keyword values; one SettingsError naming the field when one is wrong."""
        try:
            return cls(**values)
        except ValidationError as exc:
            problem = first_problem(exc, cls)
            raise SettingsError(problem.key, problem.detail, values.get(problem.key)) from None

    def updated(self, **changes: Any) -> PredictSettings:
        """These settings with some fields changed, checked again."""
        return PredictSettings.of(**{**self.model_dump(), **changes})

    @property
    def image_formats(self) -> tuple[str, ...]:
        """The formats written per image (not the batch's COCO file)."""
        return tuple(f for f in self.formats if f in FORMATS)

    def tiles_per_batch(self, on_gpu: bool) -> int:
        """Tiles per forward pass; with ``tta="flip"`` each tile is also run mirrored in the same
        pass, so half as many tiles keep a pass the size asked for (memory on a GPU)."""
        per_pass = self.tile_batch if self.tile_batch is not None else GPU_TILE_BATCH if on_gpu else CPU_TILE_BATCH
        return max(1, per_pass // 2) if self.tta == "flip" else per_pass
