"""``<model>.thresholds.json``: image and pixel thresholds kept beside a model, changed without re-export.

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

One concept, one name: an image is anomalous when its score > ``image_threshold``, a pixel when
its map value > ``pixel_threshold`` (masks use the image threshold when there is none). Every
threshold, from an argument, this file, the model's metadata or a server, goes through
:func:`check_threshold`; a model without any image threshold is a :class:`NoThresholdError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np

from .drift import check_reference
from .errors import ConfigError, MetadataError
from .files import PathLike, write_text_atomic

THRESHOLDS_SUFFIX = ".thresholds.json"
LEGACY_THRESHOLDS_FILE = "thresholds.json"  # one per folder, before thresholds belonged to one model
THRESHOLDS_FORMAT = "rd_edge.thresholds"
THRESHOLDS_VERSION = 1
# rd-train's threshold: mean + 3 std of the held-out good images' scores (metadata score_stats).
TRAINING_THRESHOLD_SIGMAS = 3.0
# The key in a model's metadata ``extra`` that says rd-calibrate chose its threshold (rd-calibrate
# on a checkpoint writes them into it; rd-export carries them): calibration_summary's dict.
CALIBRATION_KEY = "threshold_calibration"


def thresholds_path(model: PathLike) -> Path:
    """Where the thresholds of ``model`` live: ``<model file name>.thresholds.json`` beside it
    (model.onnx -> model.onnx.thresholds.json). Each model file has its own: an fp32 and an
    int8 model (or an engine) in one folder never share thresholds."""
    model = Path(model)
    return model.with_name(model.name + THRESHOLDS_SUFFIX)


def legacy_thresholds_path(model: PathLike) -> Path:
    """The folder's ``thresholds.json`` that older rd-calibrate wrote: it applies only to the model
    its ``model`` field names (or to any, when it names none)."""
    return Path(model).parent / LEGACY_THRESHOLDS_FILE


class ThresholdValueError(ConfigError, MetadataError):
    """A threshold that is not a finite number: a ConfigError for an argument, a MetadataError
    for a file or a model's metadata (it is both, so either can be caught)."""


class NoThresholdError(MetadataError):
    """The model has no image threshold: none in its metadata, no thresholds.json beside it, none
    passed. Serving still works (clients bring their own); detecting does not."""


def check_threshold(
    value: Any,
    name: str = "image_threshold",
    source: Optional[str] = None,
    nullable: bool = False,
    hint: str = "",
) -> float:
    """``value`` as a float; ThresholdValueError unless it is a finite number. Strings, bools,
    NaN, infinities and integers beyond float range are refused: a NaN threshold would pass
    every part, a string one fail mid-run. ``source`` prefixes the message (the file, "metadata"),
    ``nullable`` says null is allowed where the caller checked for it, ``hint`` what to do."""
    expected = "a finite number or null" if nullable else "a finite number"
    where = f"{source}: " if source else ""
    fix = f"; {hint}" if hint else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ThresholdValueError(f"{where}{name} must be {expected}, found {value!r}{fix}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range, e.g. 10**400
        number = math.inf
    if not math.isfinite(number):
        raise ThresholdValueError(
            f"{where}{name} must be {expected}, found {value!r} (it would hide "
            f"every defect or flag every part){fix}"
        )
    return number


def calibration_summary(report: Mapping[str, Any]) -> Dict[str, Any]:
    """What a model's metadata keeps of rd-calibrate's report: the method and the image counts."""
    return {key: report.get(key) for key in ("method", "n_good", "n_defective")}


def describe_calibration(summary: Mapping[str, Any]) -> str:
    """'rd-calibrate f1 on 12 good and 20 defective images' (the counts where known); 'manual'
    for a file written without a method (by hand, or Thresholds(...).write)."""
    method = summary.get("method") or "manual"
    if method == "manual":
        return "manual"
    text = f"rd-calibrate {method}"
    n_good, n_defective = summary.get("n_good"), summary.get("n_defective")
    if isinstance(n_good, int) and isinstance(n_defective, int):
        text += f" on {n_good} good and {n_defective} defective images"
    return text


def metadata_threshold_basis(
    threshold: Optional[float], score_stats: Optional[Mapping[str, Any]], extra: Mapping[str, Any]
) -> str:
    """How the threshold in a model's metadata was chosen, for a person: rd-calibrate's method
    (CALIBRATION_KEY), else 'from N held-out good images' when it is rd-train's mean + 3 std of
    them, else '' (set some other way, or a calibrated checkpoint exported before the key existed:
    nothing is claimed)."""
    calibration = extra.get(CALIBRATION_KEY)
    if isinstance(calibration, Mapping):
        return describe_calibration(calibration)
    stats = score_stats or {}
    count, mean, std = stats.get("count"), stats.get("mean"), stats.get("std")
    if (
        threshold is None
        or not count
        or not isinstance(mean, (int, float))
        or not isinstance(std, (int, float))
    ):
        return ""
    trained = float(mean) + TRAINING_THRESHOLD_SIGMAS * float(std)
    if not math.isclose(float(threshold), trained, rel_tol=1e-6, abs_tol=1e-12):
        return ""
    return f"from {int(count)} held-out good images"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


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
        self.image_threshold = check_threshold(self.image_threshold, "image_threshold")
        if self.pixel_threshold is not None:
            self.pixel_threshold = check_threshold(self.pixel_threshold, "pixel_threshold")

    def to_json(self) -> str:
        data = {"format": THRESHOLDS_FORMAT, "format_version": THRESHOLDS_VERSION, **asdict(self)}
        return json.dumps(data, indent=2, sort_keys=True)

    def write(self, path: PathLike) -> Path:
        """Write atomically: a reader never sees half a file."""
        return write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "Thresholds":
        if not isinstance(data, dict) or data.get("format") != THRESHOLDS_FORMAT:
            raise MetadataError(
                f"{source} is not an rd-edge thresholds file (expected a JSON object with "
                f"format={THRESHOLDS_FORMAT!r}); write it with rd-calibrate or delete it"
            )
        version = data.get("format_version")
        if version != THRESHOLDS_VERSION:
            raise MetadataError(
                f"{source}: thresholds format version {version!r}, this rd-edge reads "
                f"{THRESHOLDS_VERSION}; rerun rd-calibrate"
            )
        if "image_threshold" not in data:
            raise MetadataError(f"{source} lacks image_threshold; rerun rd-calibrate")
        pixel = data.get("pixel_threshold")
        report = data.get("report") or {}
        if not isinstance(report, dict):
            raise MetadataError(f"{source}: report must be a JSON object, found {type(report).__name__}")
        for key in ("model", "checkpoint_sha256", "method"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise MetadataError(
                    f"{source}: {key} must be a string or null, found {_short(data[key])}; rerun rd-calibrate"
                )
        return cls(
            image_threshold=check_threshold(data["image_threshold"], "image_threshold", source),
            pixel_threshold=None if pixel is None else check_threshold(pixel, "pixel_threshold", source),
            method=str(data.get("method", "manual")),
            model=data.get("model"),
            checkpoint_sha256=data.get("checkpoint_sha256"),
            report=report,
            normal_scores=check_reference(data.get("normal_scores"), source),
        )

    @classmethod
    def read(cls, path: PathLike) -> "Thresholds":
        """Read and validate; MetadataError that names the file for anything wrong."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(
                f"cannot read thresholds file {path}: {exc}; rerun rd-calibrate or delete it"
            ) from exc
        except RecursionError:
            raise MetadataError(
                f"cannot read thresholds file {path}: JSON nested too deep; rerun rd-calibrate or delete it"
            ) from None
        return cls.from_dict(data, str(path))
