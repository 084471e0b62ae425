"""Torch-free inference runtime: backends, Detector API, rd-infer, and TensorRT engine building.

Stands on :mod:`rd_edge.core` only (checked by import-linter). On a Jetson this package is the
whole product: engines are built on the device itself (``rd-build-engine``), no torch needed.
"""
from .backends import available_backends, load_runner
from .backends.trt.builder import DEFAULT_MAX_BATCH, EngineReport, build_engine, default_plan_path
from .backends.trt.builder import import_tensorrt as require_tensorrt
from .detector import Batch, Detector, Prediction
from .pipeline import Pipeline, Summary
from .sinks import Result, Sink
from .triton_repo import write_graph_repository

__all__ = ["DEFAULT_MAX_BATCH", "Batch", "Detector", "EngineReport", "Pipeline", "Prediction", "Result", "Sink",
           "Summary", "available_backends", "build_engine", "default_plan_path", "load_runner", "require_tensorrt",
           "write_graph_repository"]
