"""Datasets and image I/O: MVTec AD layout discovery, the synthetic demo dataset, readers."""

from rd_edge.data.images import (
    IMAGE_EXTENSIONS,
    list_images,
    read_image,
    read_mask,
    to_bgr_uint8,
)
from rd_edge.data.mvtec import MVTecCategory, Sample
from rd_edge.data.synthetic import (
    DEMO_CATEGORIES,
    DEMO_DEFECTS,
    DemoImage,
    render_demo_image,
    write_demo_dataset,
)

__all__ = [
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
