"""Accuracy of an exported graph on a category's test set, and of one graph against another.

Runs the graph with ONNX Runtime on the CPU (no torch), with the same preprocessing as the
runtime. Used by the int8 tests and by the int8 measurement in the issue report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from rd_edge.core.choices import BackendName
from rd_edge.core.errors import ExportError
from rd_edge.core.metadata import INPUT_NAME
from rd_edge.runtime import Runner, load_runner

PathLike = Union[str, Path]


@dataclass
class GraphPredictions:
    """Maps [N,H,W] and scores [N] of one graph on a test set, with the ground truth."""

    maps: np.ndarray
    scores: np.ndarray
    labels: np.ndarray  # 1 = anomalous
    masks: np.ndarray  # [N,H,W] bool

    def image_auroc(self) -> float:
        from rd_edge.metrics import image_auroc

        return image_auroc(self.labels, self.scores)

    def pixel_auroc(self) -> float:
        from rd_edge.metrics import pixel_auroc

        return pixel_auroc(self.masks, self.maps)


@dataclass
class AccuracyComparison:
    """A candidate graph (e.g. int8) against a reference graph (fp32) on the same test images."""

    n_images: int
    image_auroc_ref: float
    image_auroc: float
    pixel_auroc_ref: float
    pixel_auroc: float
    map_pearson: float  # over all pixels of all test images
    max_abs_map: float
    max_abs_score: float

    @property
    def image_auroc_delta(self) -> float:
        return self.image_auroc - self.image_auroc_ref

    def as_dict(self) -> Dict[str, float]:
        return {**self.__dict__, "image_auroc_delta": self.image_auroc_delta}

    def format(self) -> str:
        return (
            f"{self.n_images} test images: image AUROC {self.image_auroc:.4f} (reference "
            f"{self.image_auroc_ref:.4f}, delta {self.image_auroc_delta:+.4f}), pixel AUROC "
            f"{self.pixel_auroc:.4f} (reference {self.pixel_auroc_ref:.4f}), map Pearson "
            f"{self.map_pearson:.5f}, max|d map| {self.max_abs_map:.3g}, max|d score| "
            f"{self.max_abs_score:.3g}"
        )


def cpu_runner(onnx_path: PathLike, threads: Optional[int] = None) -> Runner:
    """The runtime's ONNX Runtime runner on the CPU (one session opener for verification,
    accuracy and the int8 report); ``threads`` bounds intra-op threads (None: ORT's default)."""
    return load_runner(onnx_path, BackendName.ORT.value, providers="cpu", threads=threads)


def predict_paths(
    onnx_path: PathLike, paths: Sequence[Path], batch_size: int = 8, threads: Optional[int] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Maps [N,H,W] and scores [N] of the graph on image files, preprocessed as the runtime does."""
    from rd_edge.core.scoring import score_images

    runner = cpu_runner(onnx_path, threads)

    def run(batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        out = runner.infer({INPUT_NAME: batch})
        return out["anomaly_map"], out["score"]

    return score_images(paths, runner.metadata, run, batch_size)


def evaluate_graph(
    onnx_path: PathLike, data_dir: PathLike, batch_size: int = 8, threads: Optional[int] = None
) -> GraphPredictions:
    """Run the graph on the test split of an MVTec-layout category."""
    from rd_edge.data import MVTecCategory, read_mask

    samples = MVTecCategory(data_dir).test_samples()
    maps, scores = predict_paths(onnx_path, [s.path for s in samples], batch_size, threads)
    size = maps.shape[1:]
    masks = np.stack([read_mask(s.mask_path, size) if s.mask_path else np.zeros(size, bool) for s in samples])
    labels = np.array([s.is_anomalous for s in samples], dtype=int)
    return GraphPredictions(maps, scores, labels, masks)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays, flattened (float64 accumulation)."""
    x = a.astype(np.float64).ravel() - a.mean(dtype=np.float64)
    y = b.astype(np.float64).ravel() - b.mean(dtype=np.float64)
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    if denom == 0:
        raise ExportError("map correlation undefined: one of the maps is constant")
    return float((x * y).sum() / denom)


def compare_graphs(
    reference: PathLike, candidate: PathLike, data_dir: PathLike, threads: Optional[int] = None
) -> AccuracyComparison:
    """Image/pixel AUROC of both graphs on the test set, and how closely their maps agree."""
    ref = evaluate_graph(reference, data_dir, threads=threads)
    cand = evaluate_graph(candidate, data_dir, threads=threads)
    return AccuracyComparison(
        n_images=len(ref.scores),
        image_auroc_ref=ref.image_auroc(),
        image_auroc=cand.image_auroc(),
        pixel_auroc_ref=ref.pixel_auroc(),
        pixel_auroc=cand.pixel_auroc(),
        map_pearson=pearson(ref.maps, cand.maps),
        max_abs_map=float(np.abs(ref.maps - cand.maps).max()),
        max_abs_score=float(np.abs(ref.scores - cand.scores).max()),
    )


INT8_NORMALIZED_BOUND = 0.05  # warn when int8 moves any calibration image's normalized score more


@dataclass
class ScoreAgreement:
    """fp32 against int8 scores on the same (calibration) images: what an int8 export costs."""

    n_images: int
    threshold: float
    max_abs_score: float
    max_abs_normalized: float  # on the normalized-score scale (0.5 = threshold), see core.postprocess
    verdict_flips: int  # images on the other side of the threshold in int8
    score_pearson: float  # nan when the fp32 scores are all equal
    bound: float = INT8_NORMALIZED_BOUND

    @property
    def ok(self) -> bool:
        return self.verdict_flips == 0 and self.max_abs_normalized <= self.bound

    def format(self) -> str:
        text = (
            f"fp32 vs int8 on {self.n_images} calibration images: max |d score| {self.max_abs_score:.3g} "
            f"(threshold {self.threshold:.6g}), max |d normalized score| {self.max_abs_normalized:.3f}, "
            f"score correlation {self.score_pearson:.4f}, verdicts changed {self.verdict_flips}"
        )
        return text

    def warning(self) -> Optional[str]:
        """None within the bound, else what to do."""
        if self.ok:
            return None
        return (
            f"int8 moves scores past the bound (normalized score by more than {self.bound:g}, or a verdict "
            f"changed on good images): check it on labelled images (rd-eval, rd-calibrate) before "
            f"deploying, calibrate on more images (--calib-images), or export fp16/fp32"
        )


def score_agreement(
    fp32_onnx: PathLike, int8_onnx: PathLike, paths: Sequence[Path], threads: Optional[int] = None
) -> ScoreAgreement:
    """Run both graphs on ``paths`` (ONNX Runtime, CPU) and compare their scores at the fp32
    model's threshold and normalized-score scale."""
    from rd_edge.core.postprocess import normalize_score, score_scale

    meta = cpu_runner(fp32_onnx, threads).metadata
    if meta.threshold is None:
        raise ExportError(
            f"{fp32_onnx} has no threshold to compare verdicts at; its checkpoint had no "
            f"normal-score statistics"
        )
    _, ref = predict_paths(fp32_onnx, paths, threads=threads)
    _, cand = predict_paths(int8_onnx, paths, threads=threads)
    threshold, scale = float(meta.threshold), score_scale(meta.score_stats)
    moved = np.abs(normalize_score(ref, threshold, scale) - normalize_score(cand, threshold, scale))
    try:
        corr = pearson(ref, cand)
    except ExportError:  # constant fp32 scores
        corr = float("nan")
    return ScoreAgreement(
        len(paths),
        threshold,
        float(np.abs(ref - cand).max()),
        float(moved.max()),
        int(((ref > threshold) != (cand > threshold)).sum()),
        corr,
    )
