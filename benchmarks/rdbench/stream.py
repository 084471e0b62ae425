"""``--stream VIDEO``: frames/s of the pipelined runtime against the sequential loop on a real video.

Both modes are the runtime's own Pipeline (rd_edge.runtime.pipeline) over the same video, the
same Detector and a JSON Lines sink (what rd-infer --json does): ``pipelined=True`` runs decode,
preprocess, inference, postprocess and the sink in their own threads; ``pipelined=False`` runs
them one after another. The modes alternate (A B A B ...) so that load from other programs on a
shared machine hits both alike; each row is the median run. Stage shares are the stages' busy
time (per frame, from the pipelined runs) over their sum.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import BenchmarkError

STAGES = ("decode", "preprocess", "inference", "postprocess", "sink")


def run_stream(
    onnx: Path,
    video: Path,
    threads: Optional[int],
    batch_size: int = 1,
    repeats: int = 2,
    limit: Optional[int] = None,
) -> Dict[str, Any]:
    """Alternate pipelined and sequential runs over ``video``; the report's "stream" section."""
    from rd_edge.runtime import Detector, JsonlSink, Pipeline, open_source

    if not video.is_file():
        raise BenchmarkError(f"--stream {video}: no such file")
    runs: Dict[str, List[Any]] = {"pipelined": [], "sequential": []}
    with Detector(onnx, threads=threads, batch_size=batch_size) as det, tempfile.TemporaryDirectory() as tmp:
        det.predict(_first_frame(video))  # warm-up: ONNX Runtime's first call allocates
        for _ in range(repeats):
            for mode in ("pipelined", "sequential"):
                with open_source(str(video), limit) as source:
                    if source.kind != "video":
                        raise BenchmarkError(f"--stream {video}: OpenCV cannot read it as a video")
                    sink = JsonlSink(Path(tmp) / f"{mode}.jsonl")
                    summary = Pipeline(det, [source], [sink], pipelined=mode == "pipelined").run()
                if summary.errors:
                    raise BenchmarkError(f"{summary.errors} frames of {video} failed: {summary.text()}")
                runs[mode].append(summary)
    return _report(runs, video, batch_size, threads)


def _first_frame(video: Path) -> Any:
    import cv2

    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise BenchmarkError(f"--stream {video}: OpenCV cannot read a frame from it")
    return frame


def _report(
    runs: Dict[str, List[Any]], video: Path, batch_size: int, threads: Optional[int]
) -> Dict[str, Any]:
    rows = {}
    for mode, summaries in runs.items():
        median = sorted(summaries, key=lambda s: s.fps)[len(summaries) // 2]
        per_frame = {k: 1000.0 * median.stage_seconds.get(k, 0.0) / max(median.frames, 1) for k in STAGES}
        rows[mode] = {
            "fps": median.fps,
            "fps_runs": [s.fps for s in summaries],
            "frames": median.frames,
            "stage_ms": per_frame,
            "stage_share": median.stage_shares(),
            "latency_ms_p50": median.latency.percentile(50) if median.latency.count else None,
        }
    pipe, seq = rows["pipelined"], rows["sequential"]
    slowest = max(pipe["stage_ms"].values())
    total = sum(seq["stage_ms"].values())
    return {
        "video": str(video),
        "batch_size": batch_size,
        "threads": threads,
        "modes": rows,
        "speedup": pipe["fps"] / max(seq["fps"], 1e-9),
        "bound_slowest_stage_fps": 1000.0 / slowest if slowest else None,
        "bound_sum_of_stages_fps": 1000.0 / total if total else None,
    }


def stream_markdown(section: Dict[str, Any]) -> str:
    """The stream section as a Markdown table: one row per mode, one column per stage."""
    head = "| mode | frames/s | " + " | ".join(f"{s} ms (share)" for s in STAGES) + " |"
    lines = [
        f"Stream {section['video']}, batch {section['batch_size']}:",
        "",
        head,
        "|" + " --- |" * (len(STAGES) + 2),
    ]
    for mode, row in section["modes"].items():
        cells = " | ".join(f"{row['stage_ms'][s]:.2f} ({row['stage_share'][s]:.0%})" for s in STAGES)
        runs = ", ".join(f"{v:.1f}" for v in row["fps_runs"])
        lines.append(f"| {mode} | {row['fps']:.1f} (runs {runs}) | {cells} |")
    lines += [
        "",
        f"pipelined / sequential: {section['speedup']:.2f}x; bounds: 1/(slowest stage) = "
        f"{section['bound_slowest_stage_fps']:.1f} frames/s, 1/(sum of stages) = "
        f"{section['bound_sum_of_stages_fps']:.1f} frames/s",
    ]
    return "\n".join(lines)
