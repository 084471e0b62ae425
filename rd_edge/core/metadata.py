"""The ``rd_edge`` metadata that travels with every exported model (ONNX property, engine sidecar).

Torch-free and onnx-free: the runtime reads it from ONNX Runtime's session metadata or from the
engine's JSON sidecar; the exporter writes it. Validated on load: a model without it, or with a
format newer than this rd-edge, is a MetadataError that says what to do; older formats are
upgraded step by step (upgrade_metadata), so every exported model keeps working.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

from .errors import MetadataError
from .thresholds import check_threshold
from .tiling import Tiling

METADATA_KEY = "rd_edge"
METADATA_FORMAT_VERSION = 2  # what this rd-edge writes; every older one is upgraded on read
INPUT_NAME = "image"
OUTPUT_NAMES = ("anomaly_map", "score")
# Resize rules (preprocess_bgr): models made before area shrinking existed were trained with
# cv2.INTER_LINEAR in both directions and keep it.
RESIZE_LINEAR = "linear"
RESIZE_AREA_LINEAR = "area-shrink/linear-enlarge"
RESIZE_RULES = (RESIZE_LINEAR, RESIZE_AREA_LINEAR)
RESIZE_DEFAULT = RESIZE_AREA_LINEAR  # the rule new models are trained with; the one default


# A model input side larger than this is a damaged or hostile file, not a model (8k x 8k float32 = 0.8 GB).
MAX_INPUT_SIDE = 8192


@dataclass
class ModelMetadata:
    backbone: str
    image_size: List[int]  # [H, W]
    threshold: Optional[float]
    score_stats: Optional[Dict[str, float]]  # min, max, mean, std, count of held-out normal scores
    checkpoint_sha256: str
    exporter_version: str
    precision: str = "fp32"  # fp32 | fp16 | int8
    blur_sigma: float = 4.0
    mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # applied inside the graph
    std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])  # applied inside the graph
    input: Dict[str, Any] = field(
        default_factory=lambda: {
            "name": INPUT_NAME,
            "dtype": "float32",
            "layout": "NCHW",
            "color": "RGB",
            "range": [0.0, 1.0],
        }
    )
    outputs: Dict[str, str] = field(
        default_factory=lambda: {
            "anomaly_map": "float32 [N,1,H,W], blurred sum of per-scale cosine distances",
            "score": "float32 [N], max of anomaly_map",
        }
    )
    opset: Optional[int] = None
    format_version: int = METADATA_FORMAT_VERSION
    extra: Dict[str, Any] = field(default_factory=dict)  # e.g. int8 calibration details
    # Tiled models: Tiling.to_dict() (tile, overlap, frame or "any", window); None: whole frames.
    tiling: Optional[Dict[str, Any]] = None
    # Added during format version 1; files without them are upgraded (_v1_to_v2) to what those
    # models did.
    pixel_threshold: Optional[float] = None  # None: masks use the image threshold
    teacher: Optional[Dict[str, Any]] = None  # {"source", "file", "sha256"} of the teacher's weights
    # How frames are resized to image_size (rd_edge.core.preprocess). Models exported before the
    # rule was recorded lack the key and read "linear" (from_json), what they were trained with.
    resize: str = RESIZE_DEFAULT

    @property
    def height(self) -> int:
        return int(self.image_size[0])

    @property
    def width(self) -> int:
        return int(self.image_size[1])

    def tile_spec(self) -> Optional[Tiling]:
        """The model's Tiling, or None when it sees whole (resized) frames."""
        return None if self.tiling is None else Tiling.from_dict(self.tiling)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: Optional[str], source: str = "model") -> "ModelMetadata":
        """Parse and validate; ``source`` names the file in error messages."""
        if not text:
            raise MetadataError(
                f"{source} has no '{METADATA_KEY}' metadata; it was not exported by "
                f"rd-export. Export it with `rd-export model.pt -o model.onnx`."
            )
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested absurdly deep
            raise MetadataError(
                f"{source}: '{METADATA_KEY}' metadata is not valid JSON "
                f"({exc if isinstance(exc, ValueError) else 'nested too deep'})"
            ) from None
        if not isinstance(data, dict):
            raise MetadataError(
                f"{source}: '{METADATA_KEY}' metadata must be a JSON object, found {type(data).__name__}"
            )
        data = upgrade_metadata(data, source)
        known = set(cls.__dataclass_fields__)
        required = {
            "backbone",
            "image_size",
            "threshold",
            "score_stats",
            "checkpoint_sha256",
            "exporter_version",
            "resize",
        }
        missing = sorted(required - set(data))
        if missing:
            raise MetadataError(f"{source}: metadata lacks {missing}; re-export the model")
        size = data["image_size"]
        if not (
            isinstance(size, list)
            and len(size) == 2
            and all(type(s) is int and 0 < s <= MAX_INPUT_SIDE for s in size)
        ):
            raise MetadataError(
                f"{source}: metadata image_size must be [H, W] integers in 1..{MAX_INPUT_SIDE}, "
                f"found {size!r}"
            )
        if data.get("tiling") is not None:  # normalized, so every reader sees the same fields
            data["tiling"] = Tiling.from_dict(data["tiling"], source).to_dict()
        _check_numbers(data, source)
        if data["resize"] not in RESIZE_RULES:
            raise MetadataError(
                f"{source}: metadata resize rule {data['resize']!r} is unknown to this "
                f"rd-edge (it knows {', '.join(RESIZE_RULES)}); upgrade rd-edge"
            )
        return cls(**{k: v for k, v in data.items() if k in known})


# --- format versions ----------------------------------------------------------------------------
# Each step turns metadata of one format version into the next, purely (a new dict, no I/O), as
# anomalib migrates its deploy metadata; readers chain them up to METADATA_FORMAT_VERSION, so a
# model exported by any earlier rd-edge keeps working. A format change adds a step here (and to
# the C++ reader's accepted range, cpp_examples/src/metadata.cpp), never an if in a reader.


def _v1_to_v2(data: Dict[str, Any]) -> Dict[str, Any]:
    """Version 1 gained fields while it was current; a file without one meant what the models of
    that time did: no pixel threshold, no tiling, an unrecorded teacher, "linear" resizing.
    Version 2 writes them all."""
    implicit = {"pixel_threshold": None, "tiling": None, "teacher": None, "resize": RESIZE_LINEAR}
    return {**implicit, **data, "format_version": 2}


UPGRADES: Dict[int, Callable[[Dict[str, Any]], Dict[str, Any]]] = {1: _v1_to_v2}


def upgrade_metadata(data: Dict[str, Any], source: str = "model") -> Dict[str, Any]:
    """``data`` (parsed rd_edge metadata of any known format version) in the current format;
    MetadataError for a version that is not a positive integer, or newer than this rd-edge."""
    version = data.get("format_version")
    if type(version) is not int or version < 1:  # type(): True == 1 in Python
        raise MetadataError(
            f"{source}: metadata format version {version!r}, this rd-edge reads 1 to "
            f"{METADATA_FORMAT_VERSION}; re-export the model with this rd-edge"
        )
    if version > METADATA_FORMAT_VERSION:
        raise MetadataError(
            f"{source}: metadata format version {version} is newer than this rd-edge reads "
            f"(1 to {METADATA_FORMAT_VERSION}); upgrade rd-edge (pip install . from a newer checkout, or a newer wheel)"
        )
    while version < METADATA_FORMAT_VERSION:
        data = UPGRADES[version](data)
        version = data["format_version"]
    return data


def _is_finite_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float range, e.g. 10**400
        return False


def _check_numbers(data: Dict[str, Any], source: str) -> None:
    """threshold: a finite number or null; score_stats: null or an object of finite numbers.
    A NaN threshold would hide every defect, a string one fail mid-run."""
    for key in ("threshold", "pixel_threshold"):
        if data.get(key) is not None:
            check_threshold(
                data[key],
                key,
                f"{source}: metadata",
                nullable=True,
                hint="re-export the model (or pass a threshold explicitly)",
            )
    stats = data["score_stats"]
    if stats is None:
        return
    bad = {k: v for k, v in stats.items() if not _is_finite_number(v)} if isinstance(stats, dict) else stats
    if not isinstance(stats, dict) or bad:
        raise MetadataError(
            f"{source}: metadata score_stats must be an object of finite numbers "
            f"(min, max, mean, std, count), found {bad!r}; re-export the model"
        )
