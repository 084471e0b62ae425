"""Runs one backend in its own process: ``python -m rdbench.worker`` with a Job as JSON on stdin.

A fresh process per backend makes its peak RSS its own (torch's, or the torch-free runtime's),
and keeps one backend's thread pools (OpenMP, ONNX Runtime's spinning workers) from competing
with another's. It talks to the parent in lines on stdout, each ``@@rdbench {json}``:
``{"type": "tick"}`` per call (the progress bar), ``{"type": "result", ...}`` per batch size, or
``{"type": "skip", "reason": ...}`` when the backend cannot run here. Anything else a library
prints on stdout is ignored by the parent.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from dataclasses import asdict
from typing import Any, Callable, Dict, List

import numpy as np

from .errors import BackendUnavailable
from .frames import frames_digest, make_frames
from .memory import peak_rss_mb, rss_mb
from .pipelines import Pipeline, make_pipeline
from .results import Job, Measurement

PREFIX = "@@rdbench "
Emit = Callable[[Dict[str, Any]], None]


def emit_line(message: Dict[str, Any]) -> None:
    """One protocol line on stdout, flushed so the parent's progress bar moves."""
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def batch_frames(frames: List[np.ndarray], call: int, batch: int) -> List[np.ndarray]:
    """The frames of call ``call``: consecutive frames of the pool, wrapping around."""
    start = call * batch
    return [frames[(start + k) % len(frames)] for k in range(batch)]


def measure_batch(
    pipeline: Pipeline, frames: List[np.ndarray], batch: int, job: Job, tick: Callable[[], None]
) -> Dict[str, List[float]]:
    """Warm-up calls, then ``job.iters`` timed calls: per-call times in ms and first scores."""
    times: Dict[str, List[float]] = {"e2e": [], "pre": [], "inf": [], "post": []}
    first_scores: List[float] = []
    gc.collect()  # start each batch size without garbage left by the previous one
    for call in range(job.warmup + job.iters):
        inputs = batch_frames(frames, call, batch)
        t0 = time.perf_counter()
        out = pipeline.run(inputs)
        e2e = time.perf_counter() - t0
        if call == 0:
            first_scores = out.scores  # frames 0..B-1 on every backend: comparable scores
        if call >= job.warmup:
            for key, value in (
                ("e2e", e2e),
                ("pre", out.preprocess_s),
                ("inf", out.inference_s),
                ("post", out.postprocess_s),
            ):
                times[key].append(value * 1000.0)
        tick()
    return {**times, "first_scores": first_scores}


def run_job(job: Job, emit: Emit = emit_line) -> None:
    """Load the job's backend, measure every batch size, emit the results (or a skip)."""
    frames = make_frames(max(job.batch_sizes), job.frame_size, job.seed)
    digest = frames_digest(frames)
    base_rss = rss_mb()
    pipeline = make_pipeline(job)
    t0 = time.perf_counter()
    try:
        pipeline.load()
    except (BackendUnavailable, ImportError) as exc:
        emit({"type": "skip", "reason": str(exc)})
        return
    except Exception as exc:
        # RdEdgeError (and what backends raise) mean "cannot run here": a reason, not a crash.
        from rd_edge.core.errors import RdEdgeError

        if not isinstance(exc, RdEdgeError):
            raise
        emit({"type": "skip", "reason": str(exc)})
        return
    load_s = time.perf_counter() - t0
    try:
        for batch in job.batch_sizes:
            raw = measure_batch(pipeline, frames, batch, job, lambda: emit({"type": "tick"}))
            m = Measurement(
                job.backend,
                job.precision,
                batch,
                raw["e2e"],
                raw["pre"],
                raw["inf"],
                raw["post"],
                raw["first_scores"],
                peak_rss_mb(),
                base_rss,
                pipeline.gpu_memory_mb(),
                load_s,
                digest,
                pipeline.details(),
            )
            emit({"type": "result", "measurement": asdict(m)})
    finally:
        pipeline.close()


def main() -> None:
    """Entry point of the worker process: the Job arrives as JSON on stdin."""
    job = Job.from_dict(json.loads(sys.stdin.read()))
    run_job(job)


if __name__ == "__main__":
    main()
