"""Anomaly-detection metrics as MVTec AD papers report them (numpy + scikit-learn only).

- image AUROC: ROC AUC of image scores against image labels (1 = anomalous).
- pixel AUROC: ROC AUC of all pixels of all images, anomaly maps against masks.
- AUPRO: area under the per-region-overlap curve up to a false-positive rate of 0.3,
  normalized to [0, 1], computed over the whole dataset (not averaged per image).
- image F1max: the best F1 score over all thresholds on image scores.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score

GOOD = "good"
METRIC_KEYS = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max")
_COLUMN_TITLES = ("image AUROC", "pixel AUROC", "AUPRO", "image F1max")


class _UndefinedMetricError(ValueError):
    """The metric is undefined for this data (e.g. only one class present)."""


# ---------------------------------------------------------------------------------------------
# Input checks.


def _image_inputs(labels: Sequence, scores: Sequence) -> Tuple[np.ndarray, np.ndarray]:
    """Labels as a 1-D bool array and scores as a 1-D float array of the same length."""
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size != s.size:
        raise ValueError(f"expected one score per label, found {y.size} labels and {s.size} scores")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(
            f"labels must be 0/1 or bool (1 = anomalous), found values {np.unique(y)[:10].tolist()}"
        )
    _check_finite(s, "scores")
    return y.astype(bool), s


def _pixel_inputs(masks: np.ndarray, maps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Masks as bool [N, H, W] and maps as float [N, H, W]; [H, W] and [N, 1, H, W] accepted."""
    m, a = _as_stack(np.asarray(masks), "masks"), _as_stack(np.asarray(maps), "maps")
    if m.shape != a.shape:
        raise ValueError(
            f"expected masks and maps of the same shape [N, H, W], found masks "
            f"{m.shape} and maps {a.shape}; resize the maps to the mask size"
        )
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    _check_finite(a, "maps")
    return m.astype(bool), a


def _as_stack(array: np.ndarray, name: str) -> np.ndarray:
    """Bring an array to [N, H, W]."""
    if array.ndim == 2:
        return array[None]
    if array.ndim == 4 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"expected {name} of shape [N, H, W], found shape {array.shape}")
    return array


def _check_finite(values: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contain NaN or infinite values; check the model outputs")


def _require_both_classes(y: np.ndarray, metric: str, unit: str) -> None:
    """Raise _UndefinedMetricError unless y holds both normal and anomalous entries."""
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        found = "anomalous" if positives else "normal"
        raise _UndefinedMetricError(
            f"{metric} needs both normal and anomalous {unit}, found only {found} ones "
            f"({y.size} {unit}); evaluate on a test set that holds both"
        )


# ---------------------------------------------------------------------------------------------
# Metrics.


def image_auroc(labels: Sequence, scores: Sequence) -> float:
    """ROC AUC of image scores; labels 1/True = anomalous. ValueError if one class is absent."""
    y, s = _image_inputs(labels, scores)
    _require_both_classes(y, "image AUROC", "images")
    return float(roc_auc_score(y, s))


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """ROC AUC over all pixels of all images (masks bool [N,H,W], maps float [N,H,W])."""
    m, a = _pixel_inputs(masks, maps)
    _require_both_classes(m, "pixel AUROC", "pixels")
    return float(roc_auc_score(m.ravel(), a.ravel()))


def best_f1(labels: np.ndarray, values: np.ndarray) -> Tuple[float, float]:
    """(lowest flagged value, F1): the F1-maximizing cut ``values >= cut`` against ``labels``
    (bool, at least one True), from scikit-learn's precision-recall curve. rd-eval's F1max and
    rd-calibrate's f1 threshold both come from here."""
    precision, recall, thresholds = precision_recall_curve(labels, values)
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0
    )[:-1]  # the last point has no cut
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])


def f1_max(labels: Sequence, scores: Sequence) -> float:
    """The best F1 over all score thresholds; ValueError if there is no anomalous image."""
    y, s = _image_inputs(labels, scores)
    if not y.any():
        raise _UndefinedMetricError(f"F1max needs at least one anomalous image, found none ({y.size} images)")
    return best_f1(y, s)[1]


def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Normalized area under the per-region-overlap curve for FPR in [0, fpr_limit].

    Regions are the 8-connected components of every ground-truth mask; the FPR counts all
    normal pixels of all images. At each threshold a region's overlap is the fraction of its
    pixels at or above the threshold; the curve is the mean overlap over regions against the
    FPR. A perfect map gives 1.0, a constant map fpr_limit / 2. Returns nan without regions.

    Because every region shares the same FPR at a given threshold, the area of the mean curve
    equals the mean of the per-region ROC areas; each of those is integrated exactly (trapezoid
    over its vertices, the point at fpr_limit interpolated). This is anomalib's AUPRO
    (per-region ROC, interpolated on a shared FPR grid, averaged) without the grid's error.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    m, a = _pixel_inputs(masks, maps)
    regions = _region_scores(m, a)
    if not regions:
        return math.nan
    normal = np.sort(a[~m], kind="stable")
    if normal.size == 0:
        raise _UndefinedMetricError(
            "AUPRO needs normal pixels to measure the false-positive "
            "rate, found none (every pixel is in a mask)"
        )
    areas = [_region_area(scores, normal, fpr_limit) for scores in regions]
    return float(np.mean(areas) / fpr_limit)


def _region_scores(masks: np.ndarray, maps: np.ndarray) -> List[np.ndarray]:
    """The map values of each 8-connected ground-truth region, over all images."""
    regions: List[np.ndarray] = []
    for mask, amap in zip(masks, maps):
        if not mask.any():
            continue
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        inside = labels > 0
        flat_labels, flat_scores = labels[inside], amap[inside]
        order = np.argsort(flat_labels, kind="stable")
        sizes = np.bincount(flat_labels, minlength=count)[1:]
        regions.extend(np.split(flat_scores[order], np.cumsum(sizes)[:-1]))
    return regions


def _region_area(scores: np.ndarray, normal_sorted: np.ndarray, fpr_limit: float) -> float:
    """Area under one region's ROC (FPR from the normal pixels) for FPR in [0, fpr_limit].

    Thresholds walk down the region's distinct scores s. Just above s the curve is at
    (#(normal > s) / n, TPR before s); at s it is at (#(normal >= s) / n, TPR with s). Between
    those two points normal pixels tied with s move it diagonally; between distinct region
    scores only normal pixels change, so it moves horizontally. FPR is found by binary search
    in the sorted normal scores, not by a ROC over millions of pixels per region.
    """
    values, counts = np.unique(scores, return_counts=True)
    values, counts = values[::-1], counts[::-1]  # descending thresholds
    n = normal_sorted.size
    tpr_at = np.cumsum(counts) / scores.size
    tpr_above = np.concatenate(([0.0], tpr_at[:-1]))
    fpr_above = (n - np.searchsorted(normal_sorted, values, side="right")) / n
    fpr_at = (n - np.searchsorted(normal_sorted, values, side="left")) / n
    fpr = np.concatenate(([0.0], np.column_stack((fpr_above, fpr_at)).ravel(), [1.0]))
    tpr = np.concatenate(([0.0], np.column_stack((tpr_above, tpr_at)).ravel(), [1.0]))
    return _area_up_to(fpr, tpr, fpr_limit)


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area of the polyline (x non-decreasing, x[0]=0, x[-1]=1) from 0 to limit."""
    k = int(np.searchsorted(x, limit, side="left"))  # first vertex at or beyond the limit
    x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
    y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)  # x0 < limit <= x1
    xs, ys = np.append(x[:k], limit), np.append(y[:k], y_limit)
    # Hand-written trapezoid: np.trapz is gone in numpy 2 and np.trapezoid is new in 2.0.
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1])) / 2.0)


# ---------------------------------------------------------------------------------------------
# Evaluation of a whole test set.


def evaluate(
    labels: Sequence, scores: Sequence, masks: np.ndarray, maps: np.ndarray, defect_types: Sequence[str]
) -> Dict:
    """All four metrics on the whole test set and per defect type.

    Each per-type entry is computed on the good images plus the images of that type. A metric
    that is undefined for the data (e.g. no good images, or no mask pixels) is nan.
    Returns {"image_auroc", "pixel_auroc", "aupro", "image_f1_max", "per_type": {type: {...}}}.
    """
    y, s = _image_inputs(labels, scores)
    m, a = _pixel_inputs(masks, maps)
    types = np.asarray([str(t) for t in defect_types])
    if not (len(types) == y.size == m.shape[0]):
        raise ValueError(
            f"expected one label, score, mask, map and defect type per image, "
            f"found {y.size} labels, {m.shape[0]} masks and maps, {len(types)} types"
        )
    inconsistent = np.flatnonzero(y != (types != GOOD))
    if inconsistent.size:
        i = int(inconsistent[0])
        raise ValueError(
            f"label {int(y[i])} of image {i} contradicts its defect type "
            f"{str(types[i])!r} (labels must be 1 exactly for the types other "
            "than 'good')"
        )
    result: Dict = _metrics_on(y, s, m, a)
    good = types == GOOD
    result["per_type"] = {
        t: _metrics_on(y[sel], s[sel], m[sel], a[sel])
        for t in sorted(set(types.tolist()) - {GOOD})
        for sel in [good | (types == t)]
    }
    return result


def _metrics_on(y: np.ndarray, s: np.ndarray, m: np.ndarray, a: np.ndarray) -> Dict[str, float]:
    """The four metrics on one subset; undefined ones are nan."""
    return {
        "image_auroc": _or_nan(image_auroc, y, s),
        "pixel_auroc": _or_nan(pixel_auroc, m, a),
        "aupro": _or_nan(aupro, m, a),
        "image_f1_max": _or_nan(f1_max, y, s),
    }


def auroc_or_nan(labels: Sequence, scores: Sequence) -> float:
    """ROC AUC of ``scores`` against ``labels`` (1 = anomalous, any shape, flattened); NaN when
    only one class is present (no defects, or no defect pixels)."""
    return _or_nan(image_auroc, np.asarray(labels).ravel(), np.asarray(scores).ravel())


def _or_nan(metric: Callable[..., float], *args: np.ndarray) -> float:
    try:
        return metric(*args)
    except _UndefinedMetricError:
        return math.nan


def format_metrics_table(result: Dict) -> str:
    """An aligned text table of an :func:`evaluate` result, in percent (nan shown as "-")."""
    rows = [("all", result)] + sorted(result.get("per_type", {}).items())
    header = ("type",) + _COLUMN_TITLES
    cells = [header] + [
        (name,) + tuple(_percent(values.get(k)) for k in METRIC_KEYS) for name, values in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join([row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])])
        for row in cells
    ]
    return "\n".join(lines)


def _percent(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100.0 * float(value):.1f}"
