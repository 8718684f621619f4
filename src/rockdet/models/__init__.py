"""Detector builders and weight loading."""

from rockdet.models.builder import build_detector, load_checkpoint_model

__all__ = ["build_detector", "load_checkpoint_model"]
