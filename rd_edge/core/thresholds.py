"""``thresholds.json``: image and pixel thresholds kept beside a model, changed without re-export.

Written by ``rd-calibrate`` (atomically), read by the runtime, which takes thresholds from call
arguments first, then this file, then the model's embedded metadata. Format (version 1)::

    {"format": "rd_edge.thresholds", "format_version": 1,
     "image_threshold": 0.83,          # an image is anomalous when score > image_threshold
     "pixel_threshold": 0.61 | null,   # a pixel is anomalous when map > pixel_threshold
     "method": "f1",                   # how they were chosen (f1, zero-escape, normal-quantile:0.99, manual)
     "model": "model.onnx",            # the file calibrated on
     "checkpoint_sha256": "..." | null,  # the trained weights it belongs to (ONNX metadata's)
     "report": {...},                  # rates and counts at these thresholds on the data
     "normal_scores": {"count": N, "values": [...]} | null}  # held-out good scores: the drift
                                       # reference (rd_edge.core.drift; optional, added later)

Only finite numbers are accepted: a NaN threshold would silently pass or flag everything.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from .drift import check_reference
from .errors import MetadataError
from .files import PathLike, write_text_atomic

THRESHOLDS_FILE = "thresholds.json"
THRESHOLDS_FORMAT = "rd_edge.thresholds"
THRESHOLDS_VERSION = 1


def thresholds_path(model: PathLike) -> Path:
    """Where the thresholds of ``model`` live: ``thresholds.json`` in the model's folder."""
    return Path(model).parent / THRESHOLDS_FILE


def finite_threshold(value: Any, name: str, source: str = "threshold") -> float:
    """``value`` as a float; MetadataError unless it is a finite number (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MetadataError(f"{source}: {name} must be a finite number, found {value!r}")
    return float(value)


@dataclass
class Thresholds:
    """An image threshold, an optional pixel threshold, and where they came from."""

    image_threshold: float
    pixel_threshold: Optional[float] = None
    method: str = "manual"
    model: Optional[str] = None
    checkpoint_sha256: Optional[str] = None
    report: Dict[str, Any] = field(default_factory=dict)
    normal_scores: Optional[Dict[str, Any]] = None

    def __post_init__(self) -> None:
        self.image_threshold = finite_threshold(self.image_threshold, "image_threshold")
        if self.pixel_threshold is not None:
            self.pixel_threshold = finite_threshold(self.pixel_threshold, "pixel_threshold")

    def to_json(self) -> str:
        data = {"format": THRESHOLDS_FORMAT, "format_version": THRESHOLDS_VERSION, **asdict(self)}
        return json.dumps(data, indent=2, sort_keys=True)

    def write(self, path: PathLike) -> Path:
        """Write atomically: a reader never sees half a file."""
        return write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "Thresholds":
        if not isinstance(data, dict) or data.get("format") != THRESHOLDS_FORMAT:
            raise MetadataError(f"{source} is not an rd-edge thresholds file (expected a JSON object with "
                                f"format={THRESHOLDS_FORMAT!r}); write it with rd-calibrate or delete it")
        version = data.get("format_version")
        if version != THRESHOLDS_VERSION:
            raise MetadataError(f"{source}: thresholds format version {version!r}, this rd-edge reads "
                                f"{THRESHOLDS_VERSION}; rerun rd-calibrate")
        if "image_threshold" not in data:
            raise MetadataError(f"{source} lacks image_threshold; rerun rd-calibrate")
        pixel = data.get("pixel_threshold")
        report = data.get("report") or {}
        if not isinstance(report, dict):
            raise MetadataError(f"{source}: report must be a JSON object, found {type(report).__name__}")
        return cls(image_threshold=finite_threshold(data["image_threshold"], "image_threshold", source),
                   pixel_threshold=None if pixel is None else finite_threshold(pixel, "pixel_threshold", source),
                   method=str(data.get("method", "manual")), model=data.get("model"),
                   checkpoint_sha256=data.get("checkpoint_sha256"), report=report,
                   normal_scores=check_reference(data.get("normal_scores"), source))

    @classmethod
    def read(cls, path: PathLike) -> "Thresholds":
        """Read and validate; MetadataError that names the file for anything wrong."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(f"cannot read thresholds file {path}: {exc}; rerun rd-calibrate or "
                                f"delete it") from exc
        return cls.from_dict(data, str(path))
