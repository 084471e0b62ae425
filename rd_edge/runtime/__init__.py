"""Torch-free inference runtime: backends, Detector API, rd-infer, and TensorRT engine building.

Stands on :mod:`rd_edge.core` only (checked by import-linter). On a Jetson this package is the
whole product: engines are built on the device itself (``rd-build-engine``), no torch needed.

This package's namespace is the runtime's public API: code outside the runtime (training,
export, commands, benchmarks, scripts) imports from ``rd_edge.runtime`` only, never from its
modules (an import-linter contract). The operator's station (web extra) is imported on use.
"""

from typing import Any

from .backends import DeviceInputRunner, Runner, available_backends, load_runner, why_unavailable
from .backends.openvino import cpu_capabilities
from .backends.trt.builder import DEFAULT_MAX_BATCH, EngineReport, build_engine, default_plan_path
from .backends.trt.builder import import_tensorrt as require_tensorrt
from .detector import Batch, Detector, Prediction
from .pipeline import Pipeline, Summary
from .sinks import ConsoleSink, JsonlSink, Result, Sink, SinkError
from .sources import open_source
from .triton_repo import write_graph_repository

_ON_USE = {"Station": "rd_edge.runtime.station", "StationServer": "rd_edge.runtime.station"}


def __getattr__(name: str) -> Any:
    if name in _ON_USE:  # Starlette/uvicorn are the station extra: not needed to import the runtime
        import importlib

        return getattr(importlib.import_module(_ON_USE[name]), name)
    raise AttributeError(f"module 'rd_edge.runtime' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_BATCH",
    "Batch",
    "ConsoleSink",
    "Detector",
    "DeviceInputRunner",
    "EngineReport",
    "JsonlSink",
    "Pipeline",
    "Prediction",
    "Result",
    "Runner",
    "Sink",
    "SinkError",
    "Station",
    "StationServer",
    "Summary",
    "available_backends",
    "build_engine",
    "cpu_capabilities",
    "default_plan_path",
    "load_runner",
    "open_source",
    "require_tensorrt",
    "why_unavailable",
    "write_graph_repository",
]
