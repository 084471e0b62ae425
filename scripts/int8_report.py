"""int8 on the CPU: accuracy of both Q/DQ flavours against fp32 on a test set, and their speed.

    python scripts/int8_report.py --onnx model.onnx --data DATA/weave [--threads 2] [--runs 60]
                                  [--speed-onnx model_256.onnx] [--scopes student,full] [--work DIR]

Quantizes ``--onnx`` (an fp32 rd-export graph) in both flavours and every --int8-scope, calibrated on the category's
train/good, and prints image/pixel AUROC of each against fp32 on the test split, with the
per-pixel map correlation (Pearson). Then times ONNX Runtime CPU at batch 1 with ``--threads``
intra-op threads: fp32 against both flavours of ``--speed-onnx`` (default: ``--onnx``), in
rounds of consecutive runs so that load from other processes hits every graph alike.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from rd_export.accuracy import compare_graphs, cpu_runner
from rd_export.quantize import INT8_TARGETS, SCOPES, quantize_int8


def quantize_all(fp32: Path, calib: Path, work: Path, tag: str, scopes: List[str]) -> Dict[str, Path]:
    """Every flavour x scope of ``fp32``, keyed "target/scope"."""
    out = {}
    for scope in scopes:
        for target in INT8_TARGETS:
            report = quantize_int8(
                fp32, work / f"{tag}_{target}_{scope}.onnx", calib, target=target, scope=scope
            )
            print(report.format(), flush=True)
            out[f"{target}/{scope}"] = report.onnx_path
    return out


def time_graphs(
    graphs: Dict[str, Path], threads: int, runs: int, rounds: int = 3, warmup: int = 5
) -> Dict[str, List[float]]:
    """Milliseconds per batch-1 run of each graph: ``rounds`` passes over the graphs, each graph
    timed in a block of runs/rounds consecutive calls.

    Blocks, not call-by-call interleaving: ORT's worker threads spin after a run, and a second
    session's spinning pool steals the cores from the one being timed. Several rounds still
    spread slow phases of the machine over every graph.
    """
    sessions = {name: cpu_runner(path, threads) for name, path in graphs.items()}
    meta = next(iter(sessions.values())).metadata
    x = np.random.default_rng(0).random((1, 3, meta.height, meta.width), dtype=np.float32)
    times: Dict[str, List[float]] = {name: [] for name in sessions}
    per_block = max(1, runs // rounds)
    for _ in range(rounds):
        for name, s in sessions.items():
            for _ in range(warmup):
                s.infer({"image": x})
            for _ in range(per_block):
                t = time.perf_counter()
                s.infer({"image": x})
                times[name].append((time.perf_counter() - t) * 1e3)
    return times


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, type=Path, help="fp32 graph of a trained model")
    p.add_argument("--data", required=True, type=Path, help="MVTec-layout category (train/good calibrates)")
    p.add_argument("--speed-onnx", type=Path, help="fp32 graph to time (default: --onnx)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--work", type=Path, help="keep the int8 graphs here (default: a temp dir)")
    p.add_argument("--json", type=Path, help="write the numbers as JSON")
    p.add_argument("--scopes", default=",".join(SCOPES), help="comma-separated --int8-scope values")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="rd_int8_report_"))
    work.mkdir(parents=True, exist_ok=True)
    result: Dict[str, Dict] = {"accuracy": {}, "speed_ms": {}}

    scopes = args.scopes.split(",")
    int8 = quantize_all(args.onnx, args.data, work, "accuracy", scopes)
    for name, path in int8.items():
        cmp = compare_graphs(args.onnx, path, args.data, threads=args.threads)
        result["accuracy"][name] = cmp.as_dict()
        print(f"{name:<17} {cmp.format()}", flush=True)

    speed_src = args.speed_onnx or args.onnx
    speed = quantize_all(speed_src, args.data, work, "speed", scopes) if args.speed_onnx else int8
    graphs = {"fp32": speed_src, **speed}
    times = time_graphs(graphs, args.threads, args.runs)
    size = cpu_runner(speed_src).metadata.image_size
    print(
        f"\nONNX Runtime CPU, batch 1, {args.threads} threads, {size[0]}x{size[1]}, {args.runs} runs per graph "
        f"in 3 rounds:"
    )
    fp32_median = float(np.median(times["fp32"]))
    for name, t in times.items():
        median = float(np.median(t))
        result["speed_ms"][name] = {
            "median": median,
            "p10": float(np.percentile(t, 10)),
            "p90": float(np.percentile(t, 90)),
        }
        print(
            f"  {name:<17} median {median:6.1f} ms  p10 {np.percentile(t, 10):6.1f}  p90 "
            f"{np.percentile(t, 90):6.1f}  speed-up vs fp32 x{fp32_median / median:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
