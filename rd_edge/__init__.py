"""rd-edge: Reverse Distillation anomaly detection, from PyTorch training to edge inference.

``import rd_edge`` stays free of torch (the runtime on a Jetson has none); the torch-side entry
points are imported on first use.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_checkpoint": "rd_edge.checkpoint",
    "save_checkpoint": "rd_edge.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rd_edge' has no attribute {name!r}")


__all__ = ["__version__", "load_checkpoint", "save_checkpoint"]
