"""Threshold precedence: which thresholds a model runs with. Call arguments first, then
``<model>.thresholds.json`` beside the model (rd_edge.core.thresholds), then the model's metadata.

Each of the two thresholds is resolved on its own, so ``--threshold`` alone keeps a calibrated
pixel threshold. Without any pixel threshold, masks use the image threshold (what models
exported before pixel thresholds existed did).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rd_edge.core.files import PathLike
from rd_edge.core.metadata import ModelMetadata
from rd_edge.core.thresholds import (
    NoThresholdError,
    Thresholds,
    check_threshold,
    describe_calibration,
    legacy_thresholds_path,
    metadata_threshold_basis,
    thresholds_path,
)


@dataclass(frozen=True)
class ResolvedThresholds:
    image_threshold: float  # an image is anomalous when score > image_threshold
    pixel_threshold: float  # a pixel is anomalous when map > pixel_threshold
    image_source: str  # "argument", the thresholds.json path, or "metadata"
    pixel_source: str  # as image_source, or "image threshold" when none was given anywhere
    # How the image threshold was chosen, for a person (rd-infer's header): "rd-calibrate f1 on 12
    # good and 20 defective images", "from 20 held-out good images" (rd-train), or "" (an argument,
    # or not known).
    image_basis: str = ""

    @property
    def image(self) -> float:  # the short names of earlier releases
        return self.image_threshold

    @property
    def pixel(self) -> float:
        return self.pixel_threshold


def beside_path(model: Optional[PathLike]) -> Optional[Path]:
    """The thresholds file that applies to ``model``: its own ``<name>.thresholds.json``, else
    the folder's legacy ``thresholds.json`` when that names this model (or none); a legacy file
    of another model is not used, with a warning (calibrating one model must never re-threshold
    another)."""
    if model is None:
        return None
    own = thresholds_path(model)
    if own.is_file():
        return own
    legacy = legacy_thresholds_path(model)
    if not legacy.is_file():
        return None
    owner = Thresholds.read(legacy).model
    if owner is not None and owner != Path(model).name:
        warnings.warn(
            f"{legacy} belongs to {owner}, not to {Path(model).name}: not used for it (thresholds "
            f"belong to one model); calibrate it with rd-calibrate, which writes {own.name}",
            stacklevel=3,
        )
        return None
    return legacy


def read_beside(model: Optional[PathLike], meta: ModelMetadata) -> Optional[Thresholds]:
    """The thresholds file of ``model`` (beside_path), if there is one; warns when it was
    calibrated for other weights than the model's (another checkpoint exported to the same folder)."""
    path = beside_path(model)
    if path is None or model is None:
        return None
    found = Thresholds.read(path)
    if found.checkpoint_sha256 and found.checkpoint_sha256 != meta.checkpoint_sha256:
        warnings.warn(
            f"{path} was calibrated on {found.model or 'another model'} (checkpoint "
            f"{found.checkpoint_sha256[:12]}), but {Path(model).name} comes from checkpoint "
            f"{meta.checkpoint_sha256[:12]}; rerun rd-calibrate on this model",
            stacklevel=3,
        )
    return found


def resolve_thresholds(
    model: Optional[PathLike],
    meta: ModelMetadata,
    threshold: Optional[float] = None,
    pixel_threshold: Optional[float] = None,
) -> ResolvedThresholds:
    """Image and pixel thresholds by precedence; NoThresholdError when no image threshold exists,
    ThresholdValueError for one that is not a finite number."""
    beside = read_beside(model, meta)
    file_label = str(beside_path(model)) if beside is not None else ""
    image, image_source = _first(
        (threshold, "argument"),
        (beside.image_threshold if beside else None, file_label),
        (meta.threshold, "metadata"),
    )
    if image is None:
        raise NoThresholdError(
            "the model has no threshold: its rd_edge metadata has none (the checkpoint "
            "had no normal-score statistics) and there is no MODEL.thresholds.json beside it; "
            "calibrate one with rd-calibrate, or pass it: Detector(..., threshold=T) or "
            "rd-infer --threshold T"
        )
    pixel, pixel_source = _first(
        (pixel_threshold, "argument"),
        (beside.pixel_threshold if beside else None, file_label),
        (meta.pixel_threshold, "metadata"),
        (image, "image threshold"),
    )
    if image_source == "metadata":
        basis = metadata_threshold_basis(meta.threshold, meta.score_stats, meta.extra)
    elif beside is not None and image_source == file_label:
        basis = describe_calibration({**beside.report, "method": beside.method})
    else:
        basis = ""
    return ResolvedThresholds(
        check_threshold(image, "threshold", image_source),
        check_threshold(pixel, "pixel threshold", pixel_source),
        image_source,
        pixel_source,
        basis,
    )


def _first(*candidates):
    """The first (value, source) whose value is not None."""
    for value, source in candidates:
        if value is not None:
            return value, source
    return None, ""
