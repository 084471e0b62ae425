"""Torch-free inference runtime: backends, preprocessing, Detector API, rd-infer."""
from .backends import available_backends, load_runner
from .detector import Detector, Prediction

__all__ = ["Detector", "Prediction", "available_backends", "load_runner"]
