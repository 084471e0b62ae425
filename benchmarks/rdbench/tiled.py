"""Tiled models: per-frame latency and tiles/s, all tiles in one batch vs tile by tile.

For a checkpoint trained with ``rd-train --tile``, latency.py measures the runtime's Detector on
one camera-size frame (``--frame 2448x2048``) two ways, in one process and interleaved
(A B, then B A, ...) so that load on a shared host hits both alike:

- ``batch``: every tile of the frame in one runner call (split only at the backend's max batch);
- ``tile-by-tile``: ``tile_batch=1``, one runner call per tile.

Both must give the same stitched map (checked); the rows report per-frame latency percentiles,
tiles/s and the speed-up of batching.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .results import percentiles

MODES = {"batch": None, "tile-by-tile": 1}  # mode -> Detector(tile_batch=...)


def checkpoint_tiling(checkpoint: Path) -> Optional[Dict[str, Any]]:
    """The checkpoint's tiling dict, or None for a whole-frame model."""
    from rd_edge.checkpoint import read_checkpoint

    return read_checkpoint(checkpoint).get("tiling")


def measure_tiled(
    onnx_path: Path, frame: np.ndarray, iters: int, warmup: int, threads: int, backend: str = "ort"
) -> Dict[str, Any]:
    """The two modes on ``frame``, interleaved; returns {"rows": [...], "tiles": n, ...}."""
    from rd_edge.runtime import Detector

    detectors = {
        mode: Detector(onnx_path, backend=backend, tile_batch=tb, threads=threads)
        for mode, tb in MODES.items()
    }
    try:
        tiles = len(detectors["batch"].tile_grid(frame.shape[:2]))  # after any resize to the trained frame
        tiling = detectors["batch"].metadata.tiling
        outputs = {mode: det.predict(frame) for mode, det in detectors.items()}  # also a warm-up
        max_diff = float(np.abs(outputs["batch"].anomaly_map - outputs["tile-by-tile"].anomaly_map).max())
        for _ in range(warmup):
            for det in detectors.values():
                det.predict(frame)
        times: Dict[str, List[float]] = {mode: [] for mode in MODES}
        order = list(MODES)
        for i in range(iters):
            for mode in order if i % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                detectors[mode].predict(frame)
                times[mode].append((time.perf_counter() - t0) * 1000.0)
    finally:
        for det in detectors.values():
            det.close()
    rows = []
    for mode, values in times.items():
        stats = percentiles(values)
        rows.append(
            {
                "mode": mode,
                "tiles": tiles,
                **stats,
                "tiles_per_s": tiles / (stats["p50_ms"] / 1000.0),
                "runner_calls": 1 if MODES[mode] is None else tiles,
            }
        )
    speedup = rows[1]["p50_ms"] / rows[0]["p50_ms"]
    return {
        "rows": rows,
        "tiling": tiling,
        "tiles": tiles,
        "frame": [int(frame.shape[1]), int(frame.shape[0])],
        "batch_speedup_p50": speedup,
        "max_abs_map_diff": max_diff,
        "iters": iters,
        "interleaved": "A B, B A, ... in one process",
    }


def markdown_tiled(result: Dict[str, Any], tiling: Dict[str, Any]) -> str:
    w, h = result["frame"]
    trained = tiling["frame"]
    fit = (
        ""
        if trained == "any" or trained == [h, w]
        else f" (resized to the trained {trained[1]}x{trained[0]})"
    )
    lines = [
        f"Tiled model: tiles {tiling['tile'][1]}x{tiling['tile'][0]}, overlap {tiling['overlap']}, "
        f"frame {w}x{h}{fit} -> {result['tiles']} tiles; {result['iters']} interleaved calls per mode",
        "",
        "| mode | runner calls | p50 ms/frame | p90 ms/frame | mean ms/frame | tiles/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['mode']} | {r['runner_calls']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
            f"{r['mean_ms']:.1f} | {r['tiles_per_s']:.1f} |"
        )
    lines.append("")
    lines.append(
        f"batch vs tile-by-tile (p50): {result['batch_speedup_p50']:.2f}x faster; "
        f"max |map difference| {result['max_abs_map_diff']:.1e}"
    )
    return "\n".join(lines)


def run_tiled(
    settings: Any,
    tiling: Dict[str, Any],
    onnx_path: Path,
    frames: Sequence[np.ndarray],
    system: Dict[str, Any],
) -> Dict[str, Any]:
    """The tiled report (same top-level layout as the whole-frame one: system, settings, results)."""
    result = measure_tiled(onnx_path, frames[0], settings.iters, settings.warmup, settings.threads)
    tiling = result["tiling"]  # the model file's own (an --onnx given may differ from the checkpoint)
    return {
        "system": system,
        "model": {"tiling": tiling},
        "settings": {
            "iters": settings.iters,
            "warmup": settings.warmup,
            "threads": settings.threads,
            "frame_size": list(settings.frame_size),
            "onnx": str(onnx_path),
        },
        "tiled": result,
        "markdown": markdown_tiled(result, tiling),
    }
