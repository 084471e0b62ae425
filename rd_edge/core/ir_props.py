"""The ``rd_edge`` metadata of an OpenVINO IR (``model.xml`` + ``model.bin``), read without openvino.

rd-export stores the same JSON as in the ONNX file as the IR's top-level runtime info,
``<net><rt_info><rd_edge value="{...}"/></rt_info></net>`` (``ov.Model.set_rt_info(json,
"rd_edge")``). The ``framework`` section that OpenVINO's converter copies from the ONNX
properties is not read: after int8 quantization it still describes the fp32 source.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .errors import MetadataError
from .files import PathLike, not_a_file
from .metadata import METADATA_KEY, ModelMetadata

# An int8 IR's metadata key (``extra``): the precision its float layers run in, "fp32" or "bf16"
# (rd-export's scope search chooses; the OpenVINO backend applies it where the CPU has bf16).
INT8_FLOAT_PRECISION_KEY = "inference_precision"


def ir_weights_path(xml_path: PathLike) -> Path:
    """The ``.bin`` that belongs to ``model.xml`` (OpenVINO's rule: same stem, beside it)."""
    return Path(xml_path).with_suffix(".bin")


def read_ir_metadata(xml_path: PathLike) -> ModelMetadata:
    """The validated rd_edge metadata of an IR; MetadataError when missing or unreadable."""
    path = Path(xml_path)
    if not path.is_file():
        found = not_a_file(path)
        raise MetadataError(
            f"cannot read model metadata from {path}: {found}; expected an OpenVINO IR "
            f"(.xml + .bin) written by rd-export --format openvino"
        )
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise MetadataError(
            f"{path} is not a readable OpenVINO IR ({exc}); re-export it with rd-export --format openvino"
        ) from exc
    if root.tag != "net":
        raise MetadataError(f"{path}: expected an OpenVINO IR (root element <net>), found <{root.tag}>")
    entries = root.findall(f"rt_info/{METADATA_KEY}")
    if len(entries) > 1:
        raise MetadataError(
            f"{path} has {len(entries)} '{METADATA_KEY}' runtime-info entries, expected one; "
            f"the file was edited after export: re-export it with rd-export"
        )
    return ModelMetadata.from_json(entries[0].get("value") if entries else None, str(path))
