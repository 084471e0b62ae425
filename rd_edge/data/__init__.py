"""Datasets and image I/O: discovery of MVTec AD, MVTec AD 2, VisA and plain folders (layouts.py), the synthetic demo dataset, readers.

The synthetic generator is loaded on first use of one of its names, not on ``import rd_edge.data``.
"""

from typing import Any

from rd_edge.core.images import (
    IMAGE_EXTENSIONS,
    list_images,
    read_image,
    read_mask,
    to_bgr_uint8,
)
from rd_edge.data.layouts import LAYOUTS, FolderDataset, open_dataset
from rd_edge.data.mvtec import MVTecCategory, Sample

_SYNTHETIC = ("DEMO_CATEGORIES", "DEMO_DEFECTS", "DemoImage", "render_demo_image", "write_demo_dataset")


def __getattr__(name: str) -> Any:
    if name in _SYNTHETIC:
        from rd_edge.data import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module 'rd_edge.data' has no attribute {name!r}")


__all__ = [
    "LAYOUTS",
    "FolderDataset",
    "open_dataset",
    "DEMO_CATEGORIES",
    "DEMO_DEFECTS",
    "IMAGE_EXTENSIONS",
    "DemoImage",
    "MVTecCategory",
    "Sample",
    "list_images",
    "read_image",
    "read_mask",
    "render_demo_image",
    "to_bgr_uint8",
    "write_demo_dataset",
]
