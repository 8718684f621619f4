"""How much of a detector's head runs per tile at inference: RPN proposals and detections kept.

On a CPU the RoI box head costs about as much as the backbone's convolutions: its fully
connected layers and RoIAlign run once per proposal (torchvision keeps 1,000 by default, rockdet's
configs 150-500). A tile holds tens of rocks, so fewer proposals cost little recall and save much
time; scripts/benchmark_predict.py measures the speed-recall curve (docs/BENCHMARKS.md). The
weights are untouched: this only changes how many candidates the trained head scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from rockdet.errors import SettingsError


@dataclass(frozen=True)
class InferenceHead:
    #: RPN proposals kept per tile after NMS (two-stage detectors); None keeps the checkpoint's.
    proposals: int | None = None
    #: Detections kept per tile; None keeps the checkpoint's.
    detections: int | None = None

    def __post_init__(self) -> None:
        for key, value in (("proposals", self.proposals), ("detections_per_tile", self.detections)):
            if value is not None and value < 1:
                raise SettingsError(key, f"give at least 1, got {value}", value)

    def apply(self, model: nn.Module) -> dict[str, int]:
        """Set the head on a torchvision detector in place; returns what it now uses."""
        if hasattr(model, "rpn"):
            if self.proposals is not None:
                model.rpn._post_nms_top_n["testing"] = self.proposals
                # Candidates before NMS: never fewer than the proposals wanted after it.
                model.rpn._pre_nms_top_n["testing"] = max(self.proposals, model.rpn._pre_nms_top_n["testing"])
            if self.detections is not None:
                model.roi_heads.detections_per_img = self.detections
            return {"proposals": model.rpn._post_nms_top_n["testing"],
                    "detections": model.roi_heads.detections_per_img}
        if not hasattr(model, "detections_per_img"):  # not a torchvision detector: nothing to set
            if self != InferenceHead():
                raise SettingsError("proposals" if self.proposals is not None else "detections_per_tile",
                                    "applies to torchvision detectors")
            return {}
        if self.proposals is not None:
            raise SettingsError("proposals", "applies to two-stage detectors (Faster/Mask R-CNN); RetinaNet and "
                                             "FCOS have no proposals", self.proposals)
        if self.detections is not None:
            model.detections_per_img = self.detections
        return {"detections": model.detections_per_img}
