"""Detector builders, weight loading, and the inference form of a trained detector."""

from rockdet.models.builder import build_detector, load_checkpoint_model
from rockdet.models.inference_form import to_inference_form

__all__ = ["build_detector", "load_checkpoint_model", "to_inference_form"]
