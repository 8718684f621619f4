"""Decode any terrain-camera image into 8-bit RGB, or fail with one clear reason."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rockdet.errors import ImageReadError, RockdetError, exception_reason
from rockdet.io.archives.files import refuse_non_product
from rockdet.io.archives.pds import DATA_SUFFIXES as PDS_DATA_SUFFIXES
from rockdet.io.archives.pds import is_pds_product, read_pds_image

#: Files rockdet reads as images; PDS products (.IMG, .2B, ... or their labels) included.
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".pgm", ".ppm"}
IMAGE_SUFFIXES = RASTER_SUFFIXES | PDS_DATA_SUFFIXES
#: Percentiles used to stretch high-bit-depth images to 8 bits.
STRETCH_PERCENTILES = (0.5, 99.5)
#: Larger images are refused as likely corrupt headers rather than decoded into memory.
MAX_PIXELS = 400_000_000
_OVER_LIMIT = f"image exceeds the {MAX_PIXELS:,}-pixel limit"


@dataclass
class LoadedImage:
    """An image as the model sees it, plus what was done to get there."""

    pixels: np.ndarray  # uint8 [H, W, 3]
    notes: list[str] = field(default_factory=list)
    #: SHA-256 of the file's bytes (None for pixels that never were a file).
    sha256: str | None = ""
    #: False where the product marks no data (PDS missing/invalid constants): never a rock.
    valid: np.ndarray | None = None
    #: The image's own camera model and pose from its label (geometry.frames.LabelGeometry).
    geometry: Any = None
    #: Why a camera model in the label cannot be used, else None.
    geometry_problem: str | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def prepare_decoders() -> None:
    """Settings decoding needs, made where decoding starts rather than at import.

    Pillow's own guard (179 M pixels) would refuse descent and orbital frames below our limit
    with a "decompression bomb" message: it is raised to our limit, never lowered or removed, so
    other code in the process keeps a guard, and what it still refuses is reported as our limit.
    A broken file gets one recorded reason from us; OpenCV's stderr chatter would bury it."""
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def read_image(path: Path | str, stretch_8bit: bool = False) -> LoadedImage:
    """Read ``path`` as 8-bit RGB; grayscale, RGBA, 16-bit and EXIF-rotated images are handled.

    One file, one outcome: whatever goes wrong while decoding it (a library's own exception
    included) is an ImageReadError naming the file, with the exception's type and first line.
    8-bit PDS products keep their values unless ``stretch_8bit`` (calibrated colours stay as
    calibrated); wider ones are stretched to 8 bit."""
    prepare_decoders()
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        return _read_image(path, stretch_8bit)
    except RockdetError:
        raise
    except Exception as exc:  # a decoder's own failure: this file's reason, never the caller's crash
        raise ImageReadError(f"{path}: cannot decode ({exception_reason(exc, with_type=True)})") from exc


def _read_image(path: Path, stretch_8bit: bool) -> LoadedImage:
    refuse_non_product(path)
    if is_pds_product(path):
        return _read_pds(path, stretch_8bit)
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageReadError(f"{path}: {image.width}x{image.height} exceeds the "
                                     f"{MAX_PIXELS:,}-pixel limit")
            notes = []
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                notes.append(f"first of {frames} frames used")
            # Asked first: exif_transpose copies every image, rotated or not (a frame's worth of
            # memory traffic for each image of a batch).
            orientation = image.getexif().get(0x0112)
            oriented = image
            if orientation not in (None, 1):
                oriented = ImageOps.exif_transpose(image)
                notes.append(f"exif_orientation={orientation}")
            oriented.load()
            pixels = _to_rgb8(oriented, notes)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        pixels, notes = _read_with_opencv(path, data)
    except Image.DecompressionBombError:
        raise ImageReadError(f"{path}: {_OVER_LIMIT}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot decode image ({exception_reason(exc)})") from None
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ImageReadError(f"{path}: image has no pixels")
    return LoadedImage(np.ascontiguousarray(pixels), notes, hashlib.sha256(data).hexdigest())


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) from the header only, after EXIF orientation (PDS products: decoded)."""
    prepare_decoders()
    if is_pds_product(Path(path)):
        image = read_image(path)
        return image.width, image.height
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112) in (5, 6, 7, 8):
                width, height = height, width
            return width, height
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file not found") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{path}: {_OVER_LIMIT}") from None
    except (OSError, UnidentifiedImageError) as exc:
        if Path(path).is_file():
            refuse_non_product(Path(path))  # an HTML page or LFS pointer says so
        raise ImageReadError(f"{path}: cannot read image header ({exception_reason(exc)})") from None
    except Exception as exc:  # a header no decoder expected: this file's reason
        raise ImageReadError(f"{path}: cannot read image header ({exception_reason(exc, with_type=True)})") from None


def stretch_to_uint8(values: np.ndarray, notes: list[str], valid: np.ndarray | None = None) -> np.ndarray:
    """Percentile stretch of a high-bit-depth array to 0..255, over its finite (and ``valid``)
    pixels only.

    Float products mark nodata as NaN or inf; one such pixel would make every percentile NaN
    and the whole image black. They become 0 and their count goes into ``notes``."""
    values = values.astype(np.float32)
    finite = np.isfinite(values)
    if valid is not None:
        finite &= valid if values.ndim == 2 else valid[:, :, None]
    if not finite.any():
        raise ValueError("no finite pixel values")
    low, high = np.percentile(values[finite], STRETCH_PERCENTILES)
    if high <= low:
        high = low + 1.0
    masked = int(finite.size - np.count_nonzero(finite))
    if valid is not None:
        notes.append(f"stretched to 8 bit at percentiles {STRETCH_PERCENTILES} of the valid pixels: "
                     f"{float(low):g}..{float(high):g} -> 0..255")
        if masked:
            notes.append(f"{masked} values marked missing or invalid by the label masked to 0 (never rocks)")
    elif masked:
        notes.append(f"{masked} non-finite pixel values (nodata) masked to 0")
    return np.where(finite, stretch_with(np.where(finite, values, low), low, high), 0).astype(np.uint8)


def stretch_with(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` mapped linearly from low..high to 0..255 (clipped), as uint8."""
    scaled = np.clip((values.astype(np.float32) - low) / (high - low), 0.0, 1.0)
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def _read_pds(path: Path, stretch_8bit: bool) -> LoadedImage:
    product = read_pds_image(path)
    notes = list(product.notes)
    if not product.valid.any():
        raise ImageReadError(f"{path}: no valid pixels (every value is a missing or invalid constant)")
    if product.values.dtype == np.uint8 and not stretch_8bit:
        pixels = np.where(product.valid if product.values.ndim == 2 else product.valid[:, :, None], product.values, 0)
        notes.append("8-bit values kept as the product gives them (not stretched)")
        masked = int(product.valid.size - np.count_nonzero(product.valid))
        if masked:
            notes.append(f"{masked} values marked missing or invalid by the label masked to 0 (never rocks)")
    else:
        pixels = stretch_to_uint8(product.values, notes, product.valid)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.shape[0] * pixels.shape[1] > MAX_PIXELS:
        raise ImageReadError(f"{path}: {_OVER_LIMIT}")
    return LoadedImage(np.ascontiguousarray(pixels, dtype=np.uint8), notes, _sha256(path),
                       product.valid, product.geometry, product.geometry_problem)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _to_rgb8(image: Image.Image, notes: list[str]) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        notes.append(f"stretched {mode} to 8 bit at percentiles {STRETCH_PERCENTILES}")
        gray = stretch_to_uint8(np.array(image), notes)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        notes.append(f"dropped alpha channel ({mode})")
    elif mode in ("L", "1"):
        notes.append("grayscale replicated to 3 channels")
    elif mode != "RGB":
        notes.append(f"converted {mode} to RGB")
    return np.array(image if mode == "RGB" else image.convert("RGB"))


def _read_with_opencv(path: Path, data: bytes) -> tuple[np.ndarray, list[str]]:
    """Fallback for files Pillow cannot identify (e.g. multi-channel 16-bit TIFF)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if decoded is None:
        raise ImageReadError(f"{path}: not a readable image format")
    notes = ["decoded with OpenCV"]
    if decoded.dtype != np.uint8:
        notes.append(f"stretched {decoded.dtype} to 8 bit at percentiles {STRETCH_PERCENTILES}")
        decoded = stretch_to_uint8(decoded, notes)
    if decoded.ndim == 2:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    elif decoded.shape[2] == 4:
        notes.append("dropped alpha channel")
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    else:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return decoded, notes


