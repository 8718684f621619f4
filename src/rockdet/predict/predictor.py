"""The Predictor: a trained rock detector ready to catalogue images. It is rockdet's Python API and
what `rockdet predict` runs.

    from rockdet import Predictor
    predictor = Predictor.load("best.ckpt")        # or model.pt, model.onnx, model.torchscript
    catalog = predictor("frame.png")               # a path, a PDS product, or an RGB array
    catalog.rocks[0].diameter_m; catalog.to_pandas(); catalog.write("out/")
    predictor.predict_batch(["imgs/"], out="out/")  # exactly what `rockdet predict` does

One image's catalog is made the same way here and in a batch run (``catalog_of``): its tiles'
rocks merged, no-data dropped, sized by the camera, recorded with how they were found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from rockdet.catalog.catalog import Catalog
from rockdet.catalog.rock import Rock
from rockdet.errors import SettingsError
from rockdet.geometry.sizing import ABOVE_HORIZON, CameraSizer, ImageFrame, LabelSizer, Sizer
from rockdet.io.images import LoadedImage, read_image
from rockdet.io.inputs import file_sha256
from rockdet.models.info import ModelInfo
from rockdet.predict.detect import detect_raw
from rockdet.predict.flip import views_floor
from rockdet.predict.merge import drop_rocks_on_no_data
from rockdet.predict.runtimes import Detector, TorchDetector, load_detector
from rockdet.predict.settings import CAMERA_AUTO, CAMERA_NONE, PredictSettings

log = logging.getLogger(__name__)

#: The name of pixels passed as an array, unless the caller names them.
ARRAY_NAME = "array"


@dataclass(kw_only=True)
class DecodedImage(LoadedImage):
    """An image given to a Predictor: its pixels and what is known of it, from a file or an array."""

    name: str
    #: The file it came from (its resolved path is recorded as the catalog's source).
    path: Path | None = None


class CameraChoice(NamedTuple):
    """How rocks are sized: the sizer, what catalogs record of the camera, and its files."""

    sizer: Sizer | None
    record: dict[str, Any] | None
    files: list[Path]


def choose_camera(settings: PredictSettings) -> CameraChoice:
    """The camera for ``camera`` auto, none or a YAML file. A file's record holds the SHA-256 of
    the YAML and of its exclusion mask, so a resumed run redoes images sized with another."""
    if settings.camera == CAMERA_NONE:
        return CameraChoice(None, None, [])
    if settings.camera == CAMERA_AUTO:
        sizer = LabelSizer(settings.ground_z)
        return CameraChoice(sizer, sizer.describe(), [])
    from rockdet.geometry.cameras import load_camera

    path = Path(settings.camera)
    camera = load_camera(path)
    record = {"file": str(path), "sha256": file_sha256(path), **camera.describe()}
    mask = camera.config.exclusion_mask
    if mask is not None:
        if not Path(mask).is_file():
            raise SettingsError("camera", f"{path}: exclusion_mask {mask} not found")
        record["exclusion_mask_sha256"] = file_sha256(Path(mask))
    return CameraChoice(CameraSizer(camera), record, [path] + ([Path(mask)] if mask is not None else []))


def resolve_device(device: str) -> torch.device:
    """auto: the first CUDA GPU when torch sees one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= available:
            raise SettingsError("device", f"{device}: this machine has {available} CUDA GPU(s) visible to torch "
                                          f"{torch.__version__}; use cpu or auto", device)
    return torch.device(device)


def lightning_devices(settings: PredictSettings) -> tuple[str, int | list[int]]:
    """(accelerator, devices) for Lightning from ``device`` and ``devices``."""
    device, count = settings.device, settings.devices
    if device == "cpu":
        return "cpu", count  # several CPU processes: DDP over gloo, mainly for testing
    if device.startswith("cuda"):
        wanted = [int(device.split(":", 1)[1])] if ":" in device else list(range(count))
        for index in wanted:
            resolve_device(f"cuda:{index}")  # one SettingsError when the GPU is not there
        return "gpu", wanted if ":" in device else count
    return "auto", count


class Predictor:
    """A detector, its ModelInfo and the settings it runs with."""

    def __init__(self, detector: Detector, settings: PredictSettings | None = None, source: Path | str | None = None,
                 checkpoint_sha256: str | None = None):
        settings = settings or PredictSettings()
        self.detector = detector.eval()
        self.info: ModelInfo = detector.info
        self.source = Path(source) if source is not None else None
        threshold = settings.score_threshold if settings.score_threshold is not None else self.info.operating_threshold
        floor = self.info.score_floor
        if floor is not None and threshold < floor:
            raise SettingsError("score_threshold", f"{threshold:g} is below {floor:g}, the lowest score "
                                f"{self.source or 'this exported model'} returns; export the checkpoint again "
                                f"with --score-floor {threshold:g}", threshold)
        if settings.tta == "flip" and floor is not None and floor > views_floor(threshold) and \
                floor > self.info.detector.get("box_score_thresh", self.info.detector.get("score_thresh", 0.0)):
            # The graph's floor, raised above the detector's own at export, cuts view boxes that
            # could lift a pair's fused score to the threshold (rockdet.predict.flip).
            log.warning("%s returns no score below %g, so with tta flip a view's box below it counts 0 and a rock "
                        "both views see may fuse below %g; export the checkpoint again with --score-floor %g",
                        self.source or "this exported model", floor, threshold, views_floor(threshold))
        #: The settings with the operating point filled in (the model's own unless given).
        self.settings = settings.updated(score_threshold=threshold)
        self.device = resolve_device(settings.device)
        self.camera = choose_camera(self.settings)
        self.checkpoint_sha256 = checkpoint_sha256 or (file_sha256(self.source) if self.source else None)

    @classmethod
    def load(cls, path: Path | str, settings: PredictSettings | None = None, **values: Any) -> Predictor:
        """A Predictor for a checkpoint (.ckpt), model file (model.pt) or export (.onnx,
        .torchscript); ``settings`` and keyword values as in PredictSettings (e.g. ``device="cuda"``,
        ``score_threshold=0.3``, ``camera="navcam.yaml"``)."""
        settings = settings.updated(**values) if settings is not None else PredictSettings.of(**values)
        detector = load_detector(path, runtime=settings.runtime, trust=settings.trust_checkpoint,
                                 as_trained=settings.as_trained, proposals=settings.proposals,
                                 detections=settings.detections_per_tile, device=settings.device)
        return cls(detector, settings, path)

    def with_settings(self, **changes: Any) -> Predictor:
        """This predictor with other settings that need no reload (threshold, tiling, camera, outputs)."""
        if not changes:
            return self
        reload = sorted(key for key in ("runtime", "trust_checkpoint", "as_trained", "proposals", "detections_per_tile")
                        if key in changes and changes[key] != getattr(self.settings, key))
        if reload:
            raise SettingsError(reload[0], "changes how the model is loaded; use Predictor.load")
        return Predictor(self.detector, self.settings.updated(**changes), self.source, self.checkpoint_sha256)

    # --- what the catalogs record ------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return self.info.input_size

    @property
    def tiles_per_batch(self) -> int:
        return self.settings.tiles_per_batch(on_gpu=self.device.type == "cuda")

    @property
    def context(self) -> dict[str, Any]:
        """Recorded in every catalog: what made its rocks (resume compares it)."""
        settings = self.settings
        return {"checkpoint": str(self.source) if self.source else None, "checkpoint_sha256": self.checkpoint_sha256,
                "arch": self.info.arch, "model_form": self.detector.describe(), "runtime": self.detector.runtime,
                "score_threshold": settings.score_threshold,
                "tiling": {"tile": settings.tile or self.input_size, "overlap": settings.overlap,
                           "auto": settings.tile is None,
                           "merge": f"{settings.merge_method}/{settings.merge_metric}>{settings.merge_threshold}",
                           "full_image_pass": settings.full_image_pass, "nested": settings.nested_threshold,
                           "featureless_black": None if settings.sky_fraction is None else
                           f"{settings.sky_fraction} below {settings.sky_level}",
                           **({"min_diameter_px": settings.min_diameter_px} if settings.min_diameter_px is not None else {}),
                           **({"tta": settings.tta} if settings.tta != "none" else {}),
                           # Only where a camera sizes rocks: without one the rule cannot apply.
                           **({"above_horizon": "left out" if settings.drop_above_horizon else "kept"}
                              if self.camera.sizer is not None else {})},
                "camera": self.camera.record, "head": self.detector.head}

    def catalog_of(self, image: DecodedImage | Any, rocks: list[Rock], tiles: int, name: str | None = None) -> Catalog:
        """One image's catalog from its merged rocks: no-data dropped, sized, recorded."""
        frame = ImageFrame.of(image)
        rocks = drop_rocks_on_no_data(rocks, frame.valid)
        sized = self.camera.sizer(rocks, frame) if self.camera.sizer is not None else None
        record = dict(sized.record) if sized is not None and sized.record is not None else None
        if record is not None and self.settings.drop_above_horizon:
            on_ground = tuple(rock for rock in sized.rocks if rock.size_flag != ABOVE_HORIZON)
            record["left_out_above_horizon"] = len(sized.rocks) - len(on_ground)
            if record["left_out_above_horizon"]:
                sized = replace(sized, rocks=tuple(rock.numbered(n) for n, rock in enumerate(on_ground, start=1)))
        notes = list(image.notes) + ([record["geometry_note"]] if record and record.get("geometry_note") else [])
        source = str(Path(image.path).resolve()) if image.path is not None else None
        return Catalog(str(image.path) if image.path is not None else (name or image.name), frame.width, frame.height,
                       tuple(sized.rocks) if record is not None else tuple(rocks), image.sha256,
                       with_masks=self.info.has_masks, with_geometry=record is not None,
                       context={**self.context, "source": source, "tiles": tiles, "image_notes": notes,
                                **(record or {})})

    # --- images ------------------------------------------------------------------------------
    def __call__(self, image: str | Path | np.ndarray, name: str | None = None) -> Catalog:
        """The catalog of one image: a file path (any format rockdet reads, PDS products with
        their label's camera model included) or 8-bit pixels, [H, W, 3] RGB or [H, W] grey."""
        return next(self.predict_images([image], [name] if name is not None else None))

    def predict_images(self, images: Iterable[str | Path | np.ndarray], names: Iterable[str] | None = None
                       ) -> Iterator[Catalog]:
        """Catalogs of several images in order; their tiles share forward passes."""
        if isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)):
            images = [images]  # one image, not its characters or rows
        names = iter(names) if names is not None else None
        decoded: list[DecodedImage] = []

        def pixels() -> Iterator[np.ndarray]:
            for number, image in enumerate(images):
                item = decode(image, next(names) if names is not None else None, number)
                decoded.append(item)
                yield item.pixels

        # The detector may be shared (with_settings) or left elsewhere by a batch run: placed here,
        # where it runs, not when the predictor is made (a multi-device run places it per process).
        if isinstance(self.detector, TorchDetector):
            self.detector.to(self.device)
        for raw in detect_raw(self.detector, pixels(), self.settings, self.input_size, self.device,
                              self.tiles_per_batch, min_score=self.settings.score_threshold):
            image = decoded.pop(0)
            yield self.catalog_of(image, raw.rocks(self.settings), len(raw.windows))

    def predict_batch(self, inputs: Iterable[str | Path], out: str | Path, **changes: Any) -> dict[str, Any] | None:
        """Exactly what `rockdet predict` does: a catalog per image under ``out``, resumable, and
        the batch files (summary.json, rocks.csv, report.html, ...). Returns the summary it wrote
        (None in the other processes of a multi-device run)."""
        from rockdet.predict.batch import run_batch

        inputs = [inputs] if isinstance(inputs, (str, Path)) else inputs
        return run_batch(self.with_settings(**changes), [str(i) for i in inputs], Path(out))


def decode(image: str | Path | np.ndarray, name: str | None, number: int = 0) -> DecodedImage:
    """An image given to a Predictor, decoded (a file) or checked (an array)."""
    if isinstance(image, (str, Path)):
        loaded = read_image(image)
        return DecodedImage(**vars(loaded), name=name or Path(image).name, path=Path(image))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 1:
        raise SettingsError("image", f"give a path or 8-bit pixels [H, W, 3] (RGB) or [H, W]; got an array of "
                                     f"shape {array.shape} and type {array.dtype}")
    return DecodedImage(pixels=np.ascontiguousarray(array), sha256=None,
                        name=name or (ARRAY_NAME if number == 0 else f"{ARRAY_NAME}_{number}"))
