"""Synthetic terrain generated on the fly for pretraining: seeded, unlimited, varied.

Every scene is drawn from wide ranges of what terrain cameras see, so that real images fall
inside the training domain rather than beside it: nadir and perspective (mast) views with a
black sky above the horizon, sun elevations from 5° to 60°, sparse to clustered rock fields with
small and large rocks, lander or rover hardware in the corner, and the looks of the sensors
(colour casts, vignetting, noise, Bayer demosaicing and JPEG artefacts).

Scene ``i`` of pass ``p`` is rendered from ``default_rng([seed, p, i])``: the stream is the same
for a seed whatever the number of DataLoader workers (each takes every n-th scene), and each
pass (epoch) draws new scenes.
"""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from rockdet.data.records import IGNORE_BOXES_KEY, ROCK_LABEL
from rockdet.synthetic.scenes import SceneSpec, generate_scene

#: Ranges each scene's look is drawn from.
SUN_ELEVATION_DEG = (5.0, 60.0)
ROCKS_PER_10K_PX = (0.5, 12.0)
MIN_DIAMETER_PX = (3.0, 8.0)
MAX_DIAMETER_PX = (24.0, 120.0)
SFD_EXPONENT = (1.5, 3.0)
CRATERS_PER_10K_PX = (0.0, 1.0)
PERSPECTIVE_PROBABILITY = 0.6
#: Perspective views: horizon row (fraction of the height), and the part of the nadir scene's
#: width that the near (bottom) edge of the view spans: the far edge spans all of it.
HORIZON_ROW = (0.05, 0.4)
NEAR_EDGE_SPAN = (0.25, 0.8)
OCCLUDER_PROBABILITY = 0.3
#: Rocks hidden this much behind hardware are not labelled.
MAX_HIDDEN_FRACTION = 0.5
#: Channel gains: warm lunar TCAM/PCAM casts, neutral, and the grey of Mars Navcam.
COLOUR_CASTS = ((1.0, 0.92, 0.78), (1.0, 0.97, 0.9), (1.0, 1.0, 1.0), (0.95, 0.97, 1.0))
VIGNETTING = (0.0, 0.45)
NOISE_SIGMA = (0.0, 0.03)
BAYER_PROBABILITY = 0.3
JPEG_PROBABILITY = 0.7
JPEG_QUALITY = (35, 95)
MIN_BOX_PX = 2.0


class SyntheticTerrainStream(IterableDataset):
    """Yields ``(image float[3,H,W] in 0..1, {"boxes", "labels", "ignore_boxes"})`` scenes."""

    def __init__(self, scenes_per_pass: int, size: int, seed: int = 0, vary: bool = True):
        """``vary=False`` repeats pass 0 every time: a fixed validation set."""
        self.scenes_per_pass, self.size, self.seed, self.vary = scenes_per_pass, size, seed, vary
        self.passes = 0

    def __len__(self) -> int:
        return self.scenes_per_pass

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        worker = get_worker_info()
        first, step = (worker.id, worker.num_workers) if worker else (0, 1)
        current = self.passes if self.vary else 0
        self.passes += 1  # persistent workers keep their copy, so each epoch is a new pass
        for index in range(first, self.scenes_per_pass, step):
            yield scene_sample(self.seed, current, index, self.size)


class SyntheticScenes(Dataset):
    """One fixed pass of generated scenes, indexable: synthetic terrain as one training source
    beside files (a mixed split samples by index, so the scenes repeat each epoch)."""

    def __init__(self, scenes: int, size: int, seed: int = 0):
        self.scenes, self.size, self.seed = scenes, size, seed

    def __len__(self) -> int:
        return self.scenes

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return scene_sample(self.seed, 0, index, self.size)


def scene_sample(seed: int, current_pass: int, index: int, size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scene ``index`` of pass ``current_pass`` in torchvision's detection target format."""
    pixels, boxes = render_terrain_scene(np.random.default_rng([seed, current_pass, index]), size)
    return (torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0),
            {"boxes": torch.from_numpy(boxes), IGNORE_BOXES_KEY: torch.zeros((0, 4)),
             "labels": torch.full((len(boxes),), ROCK_LABEL, dtype=torch.int64)})


def render_terrain_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: uint8 [size, size, 3] RGB and float32 [N, 4] xyxy rock boxes."""
    spec = SceneSpec(width=size, height=size, sun_azimuth_deg=rng.uniform(0, 360),
                     sun_elevation_deg=rng.uniform(*SUN_ELEVATION_DEG),
                     rocks_per_10k_px=rng.uniform(*ROCKS_PER_10K_PX),
                     min_diameter_px=rng.uniform(*MIN_DIAMETER_PX),
                     max_diameter_px=rng.uniform(*MAX_DIAMETER_PX),
                     sfd_exponent=rng.uniform(*SFD_EXPONENT), empty_fraction=0.05,
                     craters_per_10k_px=rng.uniform(*CRATERS_PER_10K_PX))
    scene = generate_scene(rng, spec)
    pixels, boxes = scene.image, scene.boxes
    if rng.random() < PERSPECTIVE_PROBABILITY:
        pixels, boxes = view_in_perspective(rng, pixels, boxes)
    if rng.random() < OCCLUDER_PROBABILITY:
        pixels, boxes = add_hardware(rng, pixels, boxes)
    return sensor_look(rng, pixels), boxes


def view_in_perspective(rng: np.random.Generator, pixels: np.ndarray, boxes: np.ndarray):
    """The ground seen from a mast: near ground magnified at the bottom, far ground compressed
    towards a horizon across the full width, black sky above it."""
    height, width = pixels.shape[:2]
    horizon = rng.uniform(*HORIZON_ROW) * height
    near = rng.uniform(*NEAR_EDGE_SPAN) * width
    source = np.float32([[0, 0], [width, 0], [(width + near) / 2, height], [(width - near) / 2, height]])
    target = np.float32([[0, horizon], [width, horizon], [width, height], [0, height]])
    warp = cv2.getPerspectiveTransform(source, target)
    warped = cv2.warpPerspective(pixels, warp, (width, height), flags=cv2.INTER_AREA,
                                 borderValue=(0, 0, 0))
    if not len(boxes):
        return warped, boxes
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 4, 1, 2)
    moved = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), warp).reshape(-1, 4, 2)
    new = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1).astype(np.float32)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
    keep = (new[:, 2] - new[:, 0] >= MIN_BOX_PX) & (new[:, 3] - new[:, 1] >= MIN_BOX_PX)
    return warped, new[keep]


def add_hardware(rng: np.random.Generator, pixels: np.ndarray, boxes: np.ndarray):
    """A lander leg or rover deck in a bottom corner; rocks mostly behind it lose their label."""
    height, width = pixels.shape[:2]
    x_edge = 0 if rng.random() < 0.5 else width
    reach_x, reach_y = rng.uniform(0.15, 0.45) * width, rng.uniform(0.1, 0.35) * height
    inner_x = x_edge + (reach_x if x_edge == 0 else -reach_x)
    polygon = np.int32([[x_edge, height], [x_edge, height - reach_y],
                        [inner_x, height - reach_y * rng.uniform(0.3, 0.9)], [inner_x, height]])
    shade = int(rng.choice([rng.uniform(10, 60), rng.uniform(170, 250)]))
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [polygon], 1)
    pixels = pixels.copy()
    pixels[mask.astype(bool)] = shade
    if not len(boxes):
        return pixels, boxes
    integral = cv2.integral(mask)
    x0, y0, x1, y1 = (np.clip(np.round(boxes[:, i]).astype(int), 0, size)
                      for i, size in ((0, width), (1, height), (2, width), (3, height)))
    covered = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    return pixels, boxes[covered / area <= MAX_HIDDEN_FRACTION]


def sensor_look(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    """Colour cast, vignetting, noise, Bayer demosaicing and JPEG compression."""
    height, width = pixels.shape[:2]
    image = pixels.astype(np.float32) / 255.0
    cast = np.array(COLOUR_CASTS[rng.integers(len(COLOUR_CASTS))]) * rng.uniform(0.95, 1.05, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / ((width / 2) ** 2 + (height / 2) ** 2)
    image = image * cast * (1.0 - rng.uniform(*VIGNETTING) * radius)[:, :, None]
    image += rng.normal(0.0, rng.uniform(*NOISE_SIGMA), image.shape)
    out = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    if rng.random() < BAYER_PROBABILITY:  # RGGB mosaic, demosaiced as a raw frame would be
        mosaic = np.zeros((height, width), dtype=np.uint8)
        mosaic[0::2, 0::2], mosaic[1::2, 1::2] = out[0::2, 0::2, 0], out[1::2, 1::2, 2]
        mosaic[0::2, 1::2], mosaic[1::2, 0::2] = out[0::2, 1::2, 1], out[1::2, 0::2, 1]
        out = cv2.cvtColor(mosaic, cv2.COLOR_BayerRG2RGB)
    if rng.random() < JPEG_PROBABILITY:
        quality = int(rng.integers(*JPEG_QUALITY))
        ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(out)
