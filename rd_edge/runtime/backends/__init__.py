"""Inference backends behind one protocol (see base.py); importing this registers the built-ins.

Registration is free: each backend imports its heavy package (onnxruntime, tensorrt, pycuda)
only inside its loader.
"""

from . import onnxruntime as _onnxruntime  # noqa: F401  (registers "ort")
from . import openvino as _openvino  # noqa: F401  (registers "openvino")
from . import trt as _trt  # noqa: F401  (registers "trt")
from .base import (
    BackendInfo,
    DeviceInputRunner,
    Runner,
    available_backends,
    load_runner,
    register_backend,
    registered_backends,
    resolve_backend,
    why_unavailable,
)

__all__ = [
    "BackendInfo",
    "DeviceInputRunner",
    "Runner",
    "available_backends",
    "load_runner",
    "register_backend",
    "registered_backends",
    "resolve_backend",
    "why_unavailable",
]
