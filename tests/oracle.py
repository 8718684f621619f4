"""A detector whose output the tests fix: every dark blob in a tile is a rock with score 0.9."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from rockdet.models.info import ModelInfo

BACKGROUND, ROCK = 200, 30


class DarkBlobDetector(nn.Module):
    def __init__(self, with_masks: bool = False):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the module a device
        self.with_masks = with_masks
        self.calls: list[int] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.calls.append(len(images))
        outputs = []
        for image in images:
            dark = (image.mean(0) < 0.3).cpu().numpy().astype(np.uint8)
            count, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
            boxes = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:]]
            output = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                      "scores": torch.full((len(boxes),), 0.9), "labels": torch.ones(len(boxes), dtype=torch.int64)}
            if self.with_masks:
                output["masks"] = torch.from_numpy(
                    np.stack([(labels == i) for i in range(1, count)]).astype(np.float32)
                    if count > 1 else np.zeros((0, *dark.shape), np.float32))[:, None]
            outputs.append(output)
        return outputs


def draw_rocks(width: int, height: int, rocks: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A flat bright image with dark rectangles (x0, y0, x1, y1) as rocks."""
    pixels = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    for x0, y0, x1, y1 in rocks:
        pixels[y0:y1, x0:x1] = ROCK
    return pixels


def save(pixels: np.ndarray, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def oracle_info(arch: str = "fasterrcnn_mobilenet_v3_large_fpn", input_size: int = 64,
                score_threshold: float | None = 0.5) -> ModelInfo:
    return ModelInfo(arch, {"min_size": input_size}, input_size, score_threshold=score_threshold)


def use_model(monkeypatch, model: nn.Module, info: ModelInfo) -> None:
    """Make every load of a model file (predict, evaluate, the operating point) give ``model``."""
    import rockdet.models

    monkeypatch.setattr(rockdet.models, "load_model", lambda path, map_location="cpu", trust=False: (model, info))


class FixedBoxes(nn.Module):
    """Returns the same boxes and scores for every tile (tile coordinates)."""

    def __init__(self, boxes: list[tuple[float, float, float, float]], scores: list[float]):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.boxes, self.scores = torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores)

    def forward(self, images):
        return [{"boxes": self.boxes.clone(), "scores": self.scores.clone(),
                 "labels": torch.ones(len(self.boxes), dtype=torch.int64)} for _ in images]


def tiny_checkpoint(path, score_threshold: float = 0.5):
    """A real (random) rockdet checkpoint of the smallest detector, for runs in a subprocess."""
    from rockdet.models import build_detector

    torch.manual_seed(0)
    settings = {"arch": "fasterrcnn_mobilenet_v3_large_fpn", "min_size": 64, "max_size": 64}
    model = build_detector(**settings)
    torch.save({"hyper_parameters": {"model": settings, "input_size": 64,
                                     "evaluation": {"score_threshold": score_threshold}},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path
