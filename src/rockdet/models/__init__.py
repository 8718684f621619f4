"""Detectors: builders, weights, model files and their typed metadata (ModelInfo), and the inference
form of a trained detector."""

from rockdet.models.builder import build_detector
from rockdet.models.files import load_model, write_model_file
from rockdet.models.inference_form import to_inference_form
from rockdet.models.info import ModelInfo

__all__ = ["ModelInfo", "build_detector", "load_model", "to_inference_form", "write_model_file"]
