#!/usr/bin/env python
"""Latency benchmark: every backend side by side, on the same frames, in one run.

    python benchmarks/latency.py --model model.pt [--onnx model.onnx] [--onnx-int8 model_int8.onnx]
        [--engine model.engine] [--backends reference,torch,ort,ort-int8,trt] [--batch-sizes 1,4,8]
        [--iters N] [--warmup N] [--threads N] [--json out.json] [--markdown out.md] [--plot out.png]
    python benchmarks/latency.py --model model.pt [--onnx model.onnx] --stream VIDEO [--repeats N]

``--stream VIDEO``: frames/s of the pipelined runtime vs the sequential loop on that video, and
each stage's share (decode, preprocess, inference, postprocess, sink); see rdbench/stream.py.

Rows: ``reference`` (the original RD4AD pipeline: torch features, torch cosine/upsampling, numpy +
scipy blur), ``torch`` (the fused module, eager), ``ort`` (the fused ONNX graph through the
runtime's Detector; ``ort-cuda``/``ort-tensorrt`` rows where those providers exist), ``ort-int8``
(the Q/DQ graph, cpu flavour), ``trt`` (TensorRT engines, CUDA preprocessing). Each backend runs
in its own process; the rows run in interleaved rounds (``--rounds``: A B C, A B C, ...), each
with its share of ``--iters``, so a shared host's drift hits every row alike, and each row's
time is reported as a ratio to ``reference`` per round with its spread. See benchmarks/rdbench.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rdbench, also under `python -m`/pytest

from rd_edge.core.cli import DefaultsHelpFormatter  # noqa: E402
from rdbench.artifacts import ensure_onnx  # noqa: E402
from rdbench.errors import BenchmarkError  # noqa: E402
from rdbench.frames import frames_digest, make_frames, parse_frame_size  # noqa: E402
from rdbench.peaks import low_precision_peaks  # noqa: E402
from rdbench.plan import BACKENDS, Settings, make_plan, parse_backends  # noqa: E402
from rdbench.results import BatchResult, Measurement, add_reference_ratios, build_result, merge_rounds  # noqa: E402
from rdbench.runner import run_jobs  # noqa: E402
from rdbench.system import cpu_count, cpu_peak, load_average, model_gflop, system_info  # noqa: E402
from rdbench.tiled import checkpoint_tiling, run_tiled  # noqa: E402
from rdbench.writers import markdown_report, write_json, write_markdown, write_plot  # noqa: E402


def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 1,4,8") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return sorted(set(values))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _frame_size(text: str):
    try:
        return parse_frame_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/latency.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, type=Path, help="checkpoint (model.pt)")
    p.add_argument("--onnx", type=Path, help="fused fp32 ONNX (default: exported to a temp dir)")
    p.add_argument("--onnx-int8", type=Path, help="Q/DQ int8 ONNX (default: quantized here, cpu flavour)")
    p.add_argument("--engine", type=Path, help="TensorRT plan (default: built here where TensorRT runs)")
    p.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"default {','.join(BACKENDS)}; also ort-cuda, ort-tensorrt",
    )
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 4, 8], help="default 1,4,8")
    p.add_argument(
        "--iters", type=_positive, default=30, help="timed calls per row, over all rounds (default 30)"
    )
    p.add_argument(
        "--rounds",
        type=_positive,
        default=3,
        help="interleaved rounds: every row runs once per round, in its own process (default 3)",
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    p.add_argument(
        "--threads",
        type=_positive,
        default=cpu_count(),
        help="torch threads = ORT intra-op threads (default: the CPUs available)",
    )
    p.add_argument(
        "--frame-size", "--frame", type=_frame_size, default=(640, 480), help="WxH of the uint8 BGR frames"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the frames")
    p.add_argument("--json", type=Path, help="write the full report as JSON")
    p.add_argument("--markdown", type=Path, help="write the Markdown table")
    p.add_argument("--plot", type=Path, help="write a PNG bar chart (p50, p99 whiskers)")
    p.add_argument("--workdir", type=Path, help="keep exported/quantized models here (default: a temp dir)")
    p.add_argument("--no-peak", action="store_true", help="skip measuring the CPU's fp32 sgemm peak")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no table on stdout")
    p.add_argument(
        "--stream",
        type=Path,
        metavar="VIDEO",
        help="instead: pipelined vs sequential frames/s on this video (ONNX Runtime, CPU)",
    )
    p.add_argument(
        "--repeats", type=_positive, default=2, help="--stream: runs of each mode, alternated (default 2)"
    )
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    if not args.model.is_file():
        raise BenchmarkError(f"--model {args.model}: no such file; expected a checkpoint written by rd-train")
    if args.warmup < 0:
        raise BenchmarkError(f"--warmup must be >= 0, got {args.warmup}")
    return Settings(
        checkpoint=args.model,
        onnx=args.onnx,
        onnx_int8=args.onnx_int8,
        engine=args.engine,
        backends=parse_backends(args.backends),
        batch_sizes=args.batch_sizes,
        iters=args.iters,
        warmup=args.warmup,
        threads=args.threads,
        frame_size=args.frame_size,
        seed=args.seed,
    )


def _check_same_frames(measurements: Sequence[Measurement], expected: str) -> None:
    """Every worker must have measured the very frames the parent made."""
    bad = sorted({f"{m.backend} {m.precision}" for m in measurements if m.frames_sha256 != expected})
    if bad:
        raise BenchmarkError(
            f"workers {bad} generated different frames than the parent; the rows would not be comparable"
        )


def build_results(
    measurements: Sequence[Measurement],
    settings: Settings,
    gflop: Optional[float],
    peak: Optional[float],
    low_peaks: Optional[Dict[str, Optional[float]]] = None,
) -> List[BatchResult]:
    """Rows grouped by batch size, in the order the backends ran; scores checked against reference."""
    measurements = merge_rounds(measurements)
    reference = {m.batch_size: m.first_scores for m in measurements if m.backend == "reference"}
    rows = [
        build_result(m, len(m.e2e_ms), gflop, peak, reference.get(m.batch_size), low_peaks)
        for m in measurements
    ]
    add_reference_ratios(rows)
    return sorted(rows, key=lambda r: r.batch_size)  # stable: backend order kept within a batch


def _count_gflop(checkpoint: Path) -> Dict[str, Any]:
    """The model's GFLOP per image; without torch (a Jetson) the GFLOP/s columns stay empty."""
    try:
        return model_gflop(str(checkpoint))
    except ImportError as exc:
        return {"gflop_per_image": None, "counting": f"not counted: {exc}"}


def run_stream_mode(args: argparse.Namespace) -> Dict[str, Any]:
    """--stream: the pipelined runtime against the sequential loop on a video."""
    from rdbench.artifacts import ensure_onnx
    from rdbench.stream import run_stream, stream_markdown

    settings = settings_from_args(args)
    workdir_ctx = (
        nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory(prefix="rd_latency_")
    )
    with workdir_ctx as workdir:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        onnx = ensure_onnx(settings.checkpoint, settings.onnx, Path(workdir))
        section = run_stream(
            onnx, args.stream, settings.threads, batch_size=min(settings.batch_sizes), repeats=args.repeats
        )
    report = {
        "system": system_info(settings.threads),
        "settings": {"command": shlex.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])},
        "stream": section,
    }
    if args.json:
        write_json(report, args.json)
    if args.markdown:
        args.markdown.write_text(stream_markdown(section) + "\n")
    if not args.quiet:
        print(stream_markdown(section))
    return report


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """The whole benchmark; returns the report (also written where the arguments say)."""
    if args.stream is not None:
        return run_stream_mode(args)
    settings = settings_from_args(args)
    system = system_info(settings.threads)
    tiling = checkpoint_tiling(settings.checkpoint)
    if tiling is not None:  # a model trained on tiles: per-frame latency, batch vs tile by tile
        return _run_tiled(args, settings, tiling, system)
    frames = make_frames(max(settings.batch_sizes), settings.frame_size, settings.seed)
    workdir_ctx = (
        nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory(prefix="rd_latency_")
    )
    with workdir_ctx as workdir:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        # Everything heavy in this process happens before the workers start, so it cannot
        # compete with them for the cores.
        plan = make_plan(settings, workdir, frames)
        model = _count_gflop(settings.checkpoint)
        system["fp32_peak"] = None if args.no_peak else cpu_peak(settings.threads)
        # bf16/int8 GEMM peaks: the limits of the OpenVINO and int8 rows
        system["low_precision_peaks"] = None if args.no_peak else low_precision_peaks(settings.threads)
        measurements, skipped = run_jobs(plan.jobs, progress=not args.quiet, rounds=args.rounds)
    _check_same_frames(measurements, frames_digest(frames))
    peak = (system["fp32_peak"] or {}).get("achievable_gflops")
    low = system["low_precision_peaks"] or {}
    results = build_results(
        measurements,
        settings,
        model["gflop_per_image"],
        peak,
        {"bf16": low.get("bf16_gops"), "int8": low.get("int8_gops")},
    )
    system["load_average_end"] = load_average()
    report = {
        "system": system,
        "model": model,
        "settings": {
            "command": shlex.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
            "backends": list(settings.backends),
            "batch_sizes": list(settings.batch_sizes),
            "iters": settings.iters,
            "warmup": settings.warmup,
            "threads": settings.threads,
            "rounds": min(args.rounds, settings.iters),
            "frames": f"{max(settings.batch_sizes)} deterministic uint8 BGR frames "
            f"{settings.frame_size[0]}x{settings.frame_size[1]} (seed {settings.seed})",
            "artifacts": plan.artifacts,
            "peak_rss": "high-water RSS of the backend's own worker process (model load + "
            "every batch size up to this row's)",
            "stages": "preprocess/inference/postprocess: medians per batch call",
        },
        "results": [r.to_dict() for r in results],
        "skipped": [{"backend": s.backend, "reason": s.reason} for s in plan.skipped + skipped],
    }
    _write_outputs(report, args)
    return report


def _run_tiled(
    args: argparse.Namespace, settings: Settings, tiling: Dict[str, Any], system: Dict[str, Any]
) -> Dict[str, Any]:
    frames = make_frames(1, settings.frame_size, settings.seed)
    workdir_ctx = (
        nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory(prefix="rd_latency_")
    )
    with workdir_ctx as workdir:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        onnx = ensure_onnx(settings.checkpoint, settings.onnx, Path(workdir))
        report = run_tiled(settings, tiling, onnx, frames, system)
    report["settings"]["command"] = shlex.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])
    if args.json:
        write_json(report, args.json)
    if args.markdown:
        Path(args.markdown).write_text(report["markdown"] + "\n")
    if not args.quiet:
        print(report["markdown"])
    return report


def _write_outputs(report: Dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        write_json(report, args.json)
    if args.markdown:
        write_markdown(report, args.markdown)
    if args.plot:
        write_plot(report, args.plot)
    if not args.quiet:
        print(markdown_report(report))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from rd_edge.core.errors import RdEdgeError

    try:
        run(args)
    except (BenchmarkError, RdEdgeError) as exc:
        print(f"latency.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
