"""``rd-eval --report DIR``: the test split as a page (rd_edge.core.report): overlay thumbnails
with the ground truth, verdicts at the thresholds rd-infer uses, the score histogram by
good/defect, ROC and PR curves, and the metrics per defect type; results.csv beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

from .core.report import Curve, Report, ReportRow, write_report, write_thumbnail
from .data.mvtec import Sample
from .metrics import METRIC_KEYS


def write_eval_report(
    folder: Path,
    model: str,
    samples: Sequence[Sample],
    maps: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    result: Dict[str, Any],
    stats: Any,
    keys: Sequence[str],
) -> Path:
    from .evaluate import sample_overlay

    threshold, pixel = result.get("threshold"), result.get("pixel_threshold")
    rows: List[ReportRow] = []
    for i, (sample, amap, score) in enumerate(zip(samples, maps, scores)):
        overlay = sample_overlay(sample, amap, float(score), stats, threshold, pixel)
        verdict = "NG" if threshold is not None and score > threshold else "OK"
        rows.append(
            ReportRow(
                source=str(sample.path),
                group=sample.defect_type,
                score=float(score),
                verdict=verdict,
                label=sample.defect_type,
                thumbnail=write_thumbnail(folder, i, overlay),
            )
        )
    facts = [
        ("model", model),
        ("thresholds from", str(result.get("threshold_source"))),
        (
            "image AUROC / pixel AUROC",
            f"{_pct(result.get('image_auroc'))} / {_pct(result.get('pixel_auroc'))}",
        ),
        (
            "AUPRO (FPR 0.3) / image F1-max",
            f"{_pct(result.get('aupro'))} / {_pct(result.get('image_f1_max'))}",
        ),
    ]
    if threshold is not None:
        facts.append(("at this threshold", verdict_counts(labels, scores, threshold)))
    per_type = [
        [name] + [_pct(values.get(k)) for k in METRIC_KEYS]
        for name, values in [("all", result)] + sorted(result.get("per_type", {}).items())
    ]
    return write_report(
        folder,
        Report(
            title=f"rd-eval: {model}",
            threshold=threshold,
            rows=rows,
            facts=facts,
            curves=_curves(np.asarray(labels), np.asarray(scores), result),
            tables=[("Metrics per defect type (%)", ["type", *METRIC_KEYS], per_type)],
        ),
    )


def verdict_counts(labels: Sequence[int], scores: Sequence[float], threshold: float) -> str:
    """False alarms (good images above the threshold) and escapes (defective ones at or below it)."""
    good = np.asarray(labels) == 0
    flagged = np.asarray(scores) > threshold
    return (
        f"false alarms {int((flagged & good).sum())}/{int(good.sum())}, "
        f"escapes {int((~flagged & ~good).sum())}/{int((~good).sum())}"
    )


def _curves(labels: np.ndarray, scores: np.ndarray, result: Dict[str, Any]) -> List[Curve]:
    """Image-level ROC and PR curves (scikit-learn), when both classes are present."""
    if labels.min() == labels.max():
        return []
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return [
        Curve(
            "ROC",
            fpr.tolist(),
            tpr.tolist(),
            "false-positive rate (good flagged)",
            "true-positive rate",
            f"(image AUROC {_pct(result.get('image_auroc'))})",
        ),
        Curve(
            "PR",
            recall.tolist(),
            precision.tolist(),
            "recall (defects flagged)",
            "precision",
            f"(F1-max {_pct(result.get('image_f1_max'))})",
        ),
    ]


def _pct(value: Any) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"
