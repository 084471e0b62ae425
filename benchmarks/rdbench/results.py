"""Jobs, raw measurements, result rows and their statistics.

A :class:`Job` is what a worker process runs (one backend, every batch size); it sends back one
:class:`Measurement` per batch size; the parent turns each into a :class:`BatchResult` row,
adding what only it knows (the model's GFLOP, the CPU's peak, the reference scores).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass
class Job:
    """One backend to measure in one worker process."""

    backend: str  # row name: reference, torch, ort, ort-cuda, ort-tensorrt, ort-int8, trt
    precision: str  # fp32 | fp16 | int8
    model_path: str  # checkpoint (.pt), graph (.onnx) or plan (.engine)
    batch_sizes: List[int]
    iters: int
    warmup: int
    threads: int
    frame_size: Tuple[int, int]  # (W, H)
    seed: int = 0
    options: Dict[str, Any] = field(default_factory=dict)  # e.g. {"providers": ["cpu"]}

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"

    @property
    def skip_name(self) -> str:
        """How the job is named under "skipped": trt has one row per precision."""
        return f"trt {self.precision}" if self.backend == "trt" else self.backend

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Job":
        data = dict(data)
        data["frame_size"] = tuple(data["frame_size"])
        return cls(**data)


@dataclass
class CallTimes:
    """One pipeline call (one batch): stage times in seconds and the image scores."""

    preprocess_s: float
    inference_s: float
    postprocess_s: float
    scores: List[float]


@dataclass
class Measurement:
    """What a worker measured for one batch size: raw per-call times in milliseconds."""

    backend: str
    precision: str
    batch_size: int
    e2e_ms: List[float]
    preprocess_ms: List[float]
    inference_ms: List[float]
    postprocess_ms: List[float]
    first_scores: List[float]  # scores of the first call (frames 0..B-1): cross-backend check
    peak_rss_mb: float  # the worker's high-water mark so far (model load + batches up to this)
    base_rss_mb: float  # the worker's RSS after imports, before the model was loaded
    gpu_mem_mb: Optional[float]
    load_s: float
    frames_sha256: str
    details: Dict[str, Any] = field(default_factory=dict)  # providers, preprocess device, ...


@dataclass
class Skipped:
    """A requested backend that could not run here, and why."""

    backend: str
    reason: str


@dataclass
class BatchResult:
    """One row of the report: a backend at one batch size. Times are per batch call."""

    backend: str
    precision: str
    batch_size: int
    iters: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    p50_ms_per_image: float
    throughput_ips: float  # images per second: batch_size / mean end-to-end time
    preprocess_ms: float  # stage medians per batch call
    inference_ms: float
    postprocess_ms: float
    peak_rss_mb: float
    model_rss_mb: float  # peak_rss_mb minus the RSS before the model was loaded
    gpu_mem_mb: Optional[float]
    gflop_per_image: Optional[float]
    gflops_per_s: Optional[float]  # model GFLOP x batch / median inference time (int8: equivalent)
    peak_fraction: Optional[float]  # gflops_per_s / the CPU's measured fp32 peak (CPU rows)
    score_diff_vs_reference: Optional[float]  # max |score - reference score| on the same frames
    load_s: float
    details: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def percentiles(values_ms: Sequence[float]) -> Dict[str, float]:
    """p50/p90/p99 (linear interpolation), mean and min of per-call times."""
    arr = np.asarray(values_ms, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no timings to summarize (iters must be >= 1)")
    stats = {f"p{p}_ms": float(np.percentile(arr, p)) for p in PERCENTILES}
    stats.update(mean_ms=float(arr.mean()), min_ms=float(arr.min()))
    return stats


def merge_rounds(measurements: Sequence[Measurement]) -> List[Measurement]:
    """Join one row's measurements from every round (see runner.run_jobs) into one, in the order
    rows first ran; details["round_p50_ms"] keeps each round's median end-to-end time."""
    groups: Dict[Tuple[str, str, int], List[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.backend, m.precision, m.batch_size), []).append(m)
    merged = []
    for parts in groups.values():
        first = parts[0]
        details = dict(first.details)
        details.pop("round", None)
        details["round_p50_ms"] = [float(np.median(p.e2e_ms)) for p in parts]
        loads = [p.details["other_cpu_pct"] for p in parts if p.details.get("other_cpu_pct") is not None]
        if loads:
            details["other_cpu_pct"] = float(np.mean(loads))
        merged.append(
            Measurement(
                backend=first.backend,
                precision=first.precision,
                batch_size=first.batch_size,
                e2e_ms=[t for p in parts for t in p.e2e_ms],
                preprocess_ms=[t for p in parts for t in p.preprocess_ms],
                inference_ms=[t for p in parts for t in p.inference_ms],
                postprocess_ms=[t for p in parts for t in p.postprocess_ms],
                first_scores=first.first_scores,
                peak_rss_mb=max(p.peak_rss_mb for p in parts),
                base_rss_mb=first.base_rss_mb,
                gpu_mem_mb=first.gpu_mem_mb,
                load_s=float(np.mean([p.load_s for p in parts])),
                frames_sha256=first.frames_sha256,
                details=details,
            )
        )
    return merged


def add_reference_ratios(rows: Sequence["BatchResult"]) -> None:
    """Each row's median time divided by ``reference``'s at the same batch size, round by round
    (both measured minutes apart, not an hour): details ratio_to_reference (median over rounds),
    ratio_min, ratio_max and ratio_per_round."""
    reference = {r.batch_size: r.details.get("round_p50_ms") for r in rows if r.backend == "reference"}
    for row in rows:
        ref, own = reference.get(row.batch_size), row.details.get("round_p50_ms")
        if not ref or not own or len(ref) != len(own):
            continue
        ratios = [a / b for a, b in zip(own, ref) if b > 0]
        if ratios:
            row.details.update(
                ratio_to_reference=float(np.median(ratios)),
                ratio_min=float(min(ratios)),
                ratio_max=float(max(ratios)),
                ratio_per_round=[round(x, 4) for x in ratios],
            )


def build_result(
    m: Measurement,
    iters: int,
    gflop_per_image: Optional[float],
    cpu_peak_gflops: Optional[float],
    reference_scores: Optional[List[float]],
    low_peaks: Optional[Dict[str, Optional[float]]] = None,
) -> BatchResult:
    """A report row from a worker's measurement plus the parent's model and machine figures."""
    stats = percentiles(m.e2e_ms)
    inference_ms = float(np.median(m.inference_ms))
    gflops = None
    if gflop_per_image is not None and inference_ms > 0:
        gflops = gflop_per_image * m.batch_size / (inference_ms / 1000.0)
    # CPU rows are compared with the measured peak of the precision they run in (fp32 sgemm;
    # bf16 and int8 GEMMs, rdbench.peaks, where measured); GPU rows with none.
    peaks = {"fp32": cpu_peak_gflops, **(low_peaks or {})}
    peak = peaks.get(m.precision) if m.details.get("device", "cpu") == "cpu" else None
    fraction = gflops / peak if (gflops and peak) else None
    diff = None
    if reference_scores is not None and len(reference_scores) == len(m.first_scores):
        diff = float(np.max(np.abs(np.subtract(m.first_scores, reference_scores))))
    return BatchResult(
        backend=m.backend,
        precision=m.precision,
        batch_size=m.batch_size,
        iters=iters,
        p50_ms_per_image=stats["p50_ms"] / m.batch_size,
        throughput_ips=m.batch_size / (stats["mean_ms"] / 1000.0),
        preprocess_ms=float(np.median(m.preprocess_ms)),
        inference_ms=inference_ms,
        postprocess_ms=float(np.median(m.postprocess_ms)),
        peak_rss_mb=m.peak_rss_mb,
        model_rss_mb=m.peak_rss_mb - m.base_rss_mb,
        gpu_mem_mb=m.gpu_mem_mb,
        gflop_per_image=gflop_per_image,
        gflops_per_s=gflops,
        peak_fraction=fraction,
        score_diff_vs_reference=diff,
        load_s=m.load_s,
        details=dict(m.details),
        **stats,
    )
