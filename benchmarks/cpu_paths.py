#!/usr/bin/env python
"""CPU inference paths side by side: speed relative to ONNX Runtime fp32, fidelity, fraction of peak.

    python benchmarks/cpu_paths.py --model model.pt --data DATA/weave [--batch-sizes 1,4]
        [--rounds 5] [--iters 3] [--threads 2] [--workdir DIR] [--json out.json] [--markdown out.md]

Paths (each made here from the checkpoint through rd-export's functions): ``torch`` eager;
``ort`` fp32 (the reference); ORT int8 ``cpu`` flavour with scope ``student`` and ``full``;
ORT int8 ``tensorrt`` flavour run on the CPU (rd-export's old default); OpenVINO ``fp32``,
``bf16``, the plugin's own default (no precision hint), NNCF ``int8`` (scope full, head float)
and ``int8-auto``, what ``rd-export --format openvino --precision int8`` chooses (scope search
with NNCF's accuracy control; its fidelity images are DATA/test, the same the table judges).

Speed: all paths live in this one process and run in interleaved rounds, the order rotated
each round (A B C, B C A, ...), so a shared host's drift hits every path alike; each path's
time per round is divided by ``ort``'s in the same round, and the table gives the median ratio
and its range. Fidelity: scores of every test image (MVTec layout: DATA/test) against ``ort``
fp32: Spearman, Pearson, and verdicts changed at a threshold calibrated on the fp32 scores of
held-out good training images (mean + 3 std). Peaks: large GEMMs in fp32, bf16 and int8 in the
same run (rdbench.system.cpu_peak, rdbench.peaks); each row's fraction is model FLOPs per
second over the peak of the precision it mostly runs in.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rdbench

from rd_edge.core.cli import DefaultsHelpFormatter  # noqa: E402
from rdbench.peaks import low_precision_peaks  # noqa: E402
from rdbench.system import cpu_peak, model_gflop, read_cpuinfo  # noqa: E402

# path name -> (precision it mostly runs in, for the peak fraction)
PATHS = {
    "torch": "fp32",
    "ort": "fp32",
    "ort-int8-cpu-student": "int8",
    "ort-int8-cpu-full": "int8",
    "ort-int8-tensorrt-flavour": "int8",
    "openvino-fp32": "fp32",
    "openvino-bf16": "bf16",
    "openvino-default": "bf16",
    "openvino-int8": "int8",
    "openvino-int8-auto": "int8",
}


def _ort(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    from rd_edge.runtime import load_runner

    runner = load_runner(path, "ort", providers="cpu", threads=threads)
    return lambda x: runner.infer({"image": x})["score"]


AS_CHOSEN = "as chosen"  # rd-edge's default for the IR: its metadata's precision (int8-auto)


def _openvino(path: Path, threads: int, precision: Any) -> Callable[[np.ndarray], np.ndarray]:
    if precision is not None:
        from rd_edge.runtime import load_runner

        asked = {} if precision == AS_CHOSEN else {"precision": precision}
        runner = load_runner(path, "openvino", threads=threads, **asked)
        return lambda x: runner.infer({"image": x})["score"]
    import openvino as ov  # the plugin's own default: no precision hint at all

    compiled = ov.Core().compile_model(
        str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    )
    request = compiled.create_infer_request()
    return lambda x: np.array(request.infer({"image": x})["score"])


def _torch(checkpoint: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    import rd_edge

    torch.set_num_threads(threads)
    model = rd_edge.load_checkpoint(checkpoint).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x))[1].numpy()

    return run


def build_paths(
    checkpoint: Path,
    data: Path,
    workdir: Path,
    threads: int,
    calib_images: int,
    skip: Sequence[str] = (),
    fidelity_dir: Optional[Path] = None,
) -> Dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Every path's model but ``skip``'s, made in ``workdir`` (kept between runs: made only once)."""
    from rd_export.cli import main as export_main
    from rd_export.onnx_export import export_onnx
    from rd_export.openvino_export import export_ir
    from rd_export.openvino_int8 import quantize_ir
    from rd_export.quantize import quantize_int8

    fp32 = workdir / "fp32.onnx"
    made: Dict[str, Path] = {"ort": fp32}
    steps: List[Tuple[str, Path, Callable[[Path], Any]]] = [
        ("ort", fp32, lambda out: export_onnx(checkpoint, out, verify=False)),
        (
            "ort-int8-cpu-student",
            workdir / "int8_cpu_student.onnx",
            lambda out: quantize_int8(
                fp32, out, data, target="cpu", scope="student", max_images=calib_images
            ),
        ),
        (
            "ort-int8-cpu-full",
            workdir / "int8_cpu_full.onnx",
            lambda out: quantize_int8(fp32, out, data, target="cpu", scope="full", max_images=calib_images),
        ),
        (
            "ort-int8-tensorrt-flavour",
            workdir / "int8_trt_student.onnx",
            lambda out: quantize_int8(
                fp32, out, data, target="tensorrt", scope="student", max_images=calib_images
            ),
        ),
        ("openvino-fp32", workdir / "fp32.xml", lambda out: export_ir(fp32, out, "fp32")),
        (
            "openvino-int8",
            workdir / "int8.xml",
            lambda out: quantize_ir(fp32, out, data, max_images=calib_images),
        ),
        (  # what rd-export --format openvino --precision int8 chooses (scope search, NNCF accuracy control)
            "openvino-int8-auto",
            workdir / "int8_auto.xml",
            lambda out: export_main(
                [str(fp32), "--format", "openvino", "--precision", "int8", "--calib-dir", str(data)]
                + ["--calib-images", str(calib_images), "-o", str(out)]
                + (["--fidelity-dir", str(fidelity_dir)] if fidelity_dir is not None else [])
            ),
        ),
    ]
    for name, out, make in steps:
        if name in skip and name != "openvino-fp32":  # the bf16 and default rows run its IR
            continue
        if not out.is_file():
            t0 = time.perf_counter()
            make(out)
            print(f"made {name}: {out} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        made[name] = out
    runners: Dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]] = {
        "torch": lambda: _torch(checkpoint, threads),
        "ort": lambda: _ort(fp32, threads),
        "ort-int8-cpu-student": lambda: _ort(made["ort-int8-cpu-student"], threads),
        "ort-int8-cpu-full": lambda: _ort(made["ort-int8-cpu-full"], threads),
        "ort-int8-tensorrt-flavour": lambda: _ort(made["ort-int8-tensorrt-flavour"], threads),
        "openvino-fp32": lambda: _openvino(made["openvino-fp32"], threads, "fp32"),
        "openvino-bf16": lambda: _openvino(made["openvino-fp32"], threads, "bf16"),
        "openvino-default": lambda: _openvino(made["openvino-fp32"], threads, None),
        "openvino-int8": lambda: _openvino(made["openvino-int8"], threads, "fp32"),
        # as rd-infer runs it: float layers in what the search chose (not the plugin's default)
        "openvino-int8-auto": lambda: _openvino(made["openvino-int8-auto"], threads, AS_CHOSEN),
    }
    return {name: load() for name, load in runners.items() if name not in skip}


def images_of(folder: Path, model: Any) -> np.ndarray:
    from rd_edge.data import list_images
    from rd_export.quantize import load_int8_calibration_batch

    return load_int8_calibration_batch(list_images(folder), model)


def fidelity(paths: Dict[str, Callable], test: np.ndarray, good: np.ndarray) -> Dict[str, Dict[str, float]]:
    """Per path: Spearman/Pearson of test scores vs ``ort``; verdicts changed at mean + 3 std of
    ``ort``'s scores on held-out good images."""
    from scipy.stats import pearsonr, spearmanr

    def scores(fn: Callable, x: np.ndarray) -> np.ndarray:
        return np.concatenate([fn(x[i : i + 4]) for i in range(0, len(x), 4)])

    ref_good = scores(paths["ort"], good)
    threshold = float(ref_good.mean() + 3 * ref_good.std())
    ref = scores(paths["ort"], test)
    out = {}
    for name, fn in paths.items():
        s = ref if name == "ort" else scores(fn, test)
        out[name] = {
            "spearman": float(spearmanr(ref, s)[0]),
            "pearson": float(pearsonr(ref, s)[0]),
            "verdicts_changed": int(((ref > threshold) != (s > threshold)).sum()),
            "max_abs_score": float(np.abs(ref - s).max()),
            "threshold": threshold,
        }
    return out


def timed_rounds(
    paths: Dict[str, Callable], x: np.ndarray, rounds: int, iters: int
) -> Dict[str, List[float]]:
    """Seconds per call of every path, per round; order rotated each round."""
    names = list(paths)
    for fn in paths.values():  # warm-up: compilation for this batch size, caches
        fn(x)
    per_round: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            for _ in range(iters):
                paths[name](x)
            per_round[name].append((time.perf_counter() - t0) / iters)
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return per_round


def summarize(
    per_round: Dict[str, List[float]], batch: int, gflop: float, peaks: Dict[str, float]
) -> Dict[str, Any]:
    ref = np.array(per_round["ort"])
    rows = {}
    for name, times in per_round.items():
        t = np.array(times)
        ratio = ref / t  # speed relative to ORT fp32, per round
        rate = gflop * batch / float(np.median(t))
        peak = peaks.get(PATHS[name])
        rows[name] = {
            "median_ms": float(np.median(t) * 1e3),
            "speedup_median": float(np.median(ratio)),
            "speedup_min": float(ratio.min()),
            "speedup_max": float(ratio.max()),
            "gflops": rate,
            "peak_fraction": rate / peak if peak else None,
        }
    return rows


def main(argv: Sequence[str] = None) -> int:
    from rd_export.quantize import DEFAULT_MAX_IMAGES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="checkpoint (model.pt)")
    p.add_argument("--data", type=Path, required=True, help="MVTec-layout category: train/good, test/")
    p.add_argument("--batch-sizes", default="1,4", help="comma-separated")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=3, help="calls per path per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--calib-images",
        type=int,
        default=DEFAULT_MAX_IMAGES,
        help="calibration images of every int8 path (rd-export's default, so the auto row is what it makes)",
    )
    p.add_argument("--workdir", type=Path, help="keep the made models here (default: a temp dir)")
    p.add_argument(
        "--skip", default="", help="comma-separated paths to leave out (e.g. torch: slow, and fp32)"
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = run(args, workdir)
    text = json.dumps(report, indent=1)
    if args.json:
        args.json.write_text(text)
    print(markdown(report))
    return 0


def run(args: argparse.Namespace, workdir: Path) -> Dict[str, Any]:
    from rd_edge.core.onnx_props import read_onnx_metadata

    skip = [name for name in args.skip.split(",") if name]
    unknown = sorted(set(skip) - set(PATHS))
    if unknown:
        raise SystemExit(f"--skip {','.join(unknown)}: expected some of {','.join(PATHS)}")
    paths = build_paths(
        args.model,
        args.data / "train" / "good",
        workdir,
        args.threads,
        args.calib_images,
        skip,
        args.data / "test",
    )
    meta = read_onnx_metadata(workdir / "fp32.onnx")
    test = images_of(args.data / "test", meta)
    good = images_of(args.data / "train" / "good", meta)[-20:]
    report: Dict[str, Any] = {
        "cpu": read_cpuinfo(),
        "backbone": meta.backbone,
        "image_size": meta.image_size,
        "threads": args.threads,
        "test_images": len(test),
    }
    report["fidelity"] = fidelity(paths, test, good)
    gflop = model_gflop(str(args.model))["gflop_per_image"]
    report["gflop_per_image"] = gflop
    report["batches"] = {}
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        peaks = {"fp32": cpu_peak(args.threads, repeats=5)["achievable_gflops"]}
        low = low_precision_peaks(args.threads, repeats=5)
        peaks.update(bf16=low["bf16_gops"], int8=low["int8_gops"])
        per_round = timed_rounds(paths, test[:batch], args.rounds, args.iters)
        peaks_after = cpu_peak(args.threads, repeats=5)["achievable_gflops"]
        report["batches"][batch] = {
            "peaks": {**peaks, "fp32_after": peaks_after, "low": low},
            "per_round_s": per_round,
            "rows": summarize(per_round, batch, gflop, peaks),
        }
    return report


def markdown(report: Dict[str, Any]) -> str:
    cpu = report["cpu"]
    lines = [
        f"{report['backbone']} {report['image_size'][0]} px, {report['threads']} threads, "
        f"{cpu.get('model name', '?')}; {report['gflop_per_image']:.2f} GFLOP/image"
    ]
    for batch, b in report["batches"].items():
        pk = b["peaks"]
        lines.append(
            f"\nbatch {batch}: peaks fp32 {pk['fp32']} GFLOP/s (after: {pk['fp32_after']}), "
            f"bf16 {pk['bf16']}, int8 {pk['int8']} GOPS; {pk['low']['measured']}"
        )
        lines.append(
            "| path | x ORT fp32 (median, range) | ms | GFLOP/s | of peak | Spearman | Pearson | "
            "verdicts changed |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for name, row in b["rows"].items():
            fid = report["fidelity"][name]
            frac = f"{row['peak_fraction']:.2f}" if row["peak_fraction"] else "–"
            lines.append(
                f"| {name} | {row['speedup_median']:.2f} ({row['speedup_min']:.2f}–{row['speedup_max']:.2f}) "
                f"| {row['median_ms']:.1f} | {row['gflops']:.0f} | {frac} | {fid['spearman']:.4f} | "
                f"{fid['pearson']:.4f} | {fid['verdicts_changed']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
