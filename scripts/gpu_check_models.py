"""GPU check, model part: one RD model through every backend this machine has, against the CPU.

Called by scripts/gpu_check.sh; usable alone:

    python scripts/gpu_check_models.py --work /tmp/rd_gpu [--backbone resnet18] [--size 256]

Builds a random-weight checkpoint (no training needed for parity), its fp32, fp16 and int8
(TensorRT flavour) graphs, the fp32/fp16/int8 TensorRT engines from them, then runs the same
demo frames through the Detector on every backend present and prints one table: differences
of map and score against ONNX Runtime on the CPU running the same graph. Whatever cannot run
is listed as skipped with its reason. Exit 1 when a comparison is out of tolerance.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Max |difference| of map and score allowed against ONNX Runtime CPU on the same graph (as in
# tests/export/test_tensorrt.py): fp32 the design's 1e-3, fp16 the exporter's 1e-2, int8 5e-2.
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}
# The Detector resizes maps to the frame size; CUDA preprocessing is within 1/255 per input
# pixel of the CPU path, which moves maps a little more than the engine alone.
PREPROCESS_SLACK = 1 / 255


class Checks:
    """Collects result rows, skips and failures; prints them as they come."""

    def __init__(self) -> None:
        self.rows: List[str] = []
        self.skipped: List[Tuple[str, str]] = []
        self.failed: List[str] = []

    def skip(self, what: str, why: str) -> None:
        self.skipped.append((what, why))
        print(f"SKIPPED {what}: {why}", flush=True)

    def attempt(self, what: str, fn: Callable[[], object]) -> Optional[object]:
        """Run ``fn``; an exception becomes a skip (missing piece) or a failure (our bug)."""
        from rd_edge.core.errors import BackendError, ExportError

        try:
            return fn()
        except (BackendError, ExportError, ImportError) as exc:
            self.skip(what, str(exc).splitlines()[0])
        except Exception:  # noqa: BLE001 - report, keep checking the other backends
            self.failed.append(f"{what}: {traceback.format_exc(limit=3)}")
            print(f"FAILED {what}:\n{traceback.format_exc()}", flush=True)
        return None


def make_models(work: Path, backbone: str, size: int, checks: Checks) -> Dict[str, Path]:
    """Checkpoint, demo data, fp32/fp16/int8 graphs."""
    from rd_edge.checkpoint import random_checkpoint as make_checkpoint
    from rd_edge.data import write_demo_dataset
    from rd_export.onnx_export import export_onnx
    from rd_export.quantize import quantize_int8

    (category,) = write_demo_dataset(
        work / "data",
        categories=["weave"],
        image_size=size,
        n_train=16,
        n_test_good=4,
        n_test_per_defect=1,
        seed=0,
    )
    models = {
        "data": category,
        "pt": make_checkpoint(work / "model.pt", backbone, size, data_dir=str(category)),
    }
    t = time.perf_counter()
    print(export_onnx(models["pt"], work / "model.onnx").format(), flush=True)
    models["onnx_fp32"] = work / "model.onnx"
    fp16 = checks.attempt(
        "export fp16", lambda: export_onnx(models["pt"], work / "model_fp16.onnx", precision="fp16")
    )
    if fp16 is not None:
        print(fp16.format(), flush=True)
        models["onnx_fp16"] = work / "model_fp16.onnx"
    q = quantize_int8(
        models["onnx_fp32"], work / "model_int8.onnx", category, target="tensorrt", max_images=16
    )
    print(q.format(), flush=True)
    models["onnx_int8"] = q.onnx_path
    print(f"models ready in {time.perf_counter() - t:.0f} s", flush=True)
    return models


def build_engines(work: Path, models: Dict[str, Path], checks: Checks) -> Dict[str, Path]:
    """fp32/fp16/int8 plans from the same checkpoint's graphs, one shared timing cache."""
    from rd_edge.runtime.backends.trt.builder import build_engine

    plans = {}
    for precision in ("fp32", "fp16", "int8"):
        source = models.get(f"onnx_{precision}")
        if source is None:
            checks.skip(f"engine {precision}", "its ONNX graph could not be made")
            continue
        plan = work / f"model_{precision}.engine"
        report = checks.attempt(
            f"engine {precision}",
            lambda: build_engine(
                source, plan, precision=precision, max_batch=8, timing_cache=work / "timing.cache"
            ),
        )
        if report is not None:
            print(report.format(), flush=True)
            plans[precision] = plan
    return plans


def frames_of(category: Path, n: int = 8) -> List[np.ndarray]:
    from rd_edge.data import MVTecCategory, read_image

    return [read_image(s.path) for s in MVTecCategory(category).test_samples()[:n]]


def run_detector(
    model: Path, frames: List[np.ndarray], **options
) -> Tuple[np.ndarray, np.ndarray, float, str]:
    """Maps [N,H,W], scores [N], ms per frame (after one warm-up), preprocessing device."""
    from rd_edge.runtime import Detector

    with Detector(model, batch_size=len(frames), **options) as det:
        det.predict(frames)  # warm-up: CUDA contexts, kernel compilation, ORT/TRT lazy init
        t = time.perf_counter()
        preds = det.predict(frames)
        ms = (time.perf_counter() - t) * 1e3 / len(frames)
        device = det.preprocess_device
    return np.stack([p.anomaly_map for p in preds]), np.array([p.score for p in preds]), ms, device


def compare(checks: Checks, name: str, precision: str, ref, got, slack: float = 0.0) -> None:
    ref_map, ref_score = ref[:2]
    amap, score, ms, device = got
    d_map, d_score = float(np.abs(amap - ref_map).max()), float(np.abs(score - ref_score).max())
    corr = float(np.corrcoef(amap.ravel(), ref_map.ravel())[0, 1]) if amap.std() and ref_map.std() else 1.0
    limit = TOLERANCE[precision] + slack
    ok = d_map <= limit and d_score <= limit
    row = (
        f"{name:<28} {precision:<5} {device:<5} {d_map:10.2e} {d_score:10.2e} {corr:9.5f} "
        f"{limit:9.2e} {ms:8.2f}  {'ok' if ok else 'FAIL'}"
    )
    checks.rows.append(row)
    print(row, flush=True)
    if not ok:
        checks.failed.append(
            f"{name} {precision}: max|d map| {d_map:.3g}, max|d score| {d_score:.3g} > {limit:.3g}"
        )


def check_torch_cuda(models: Dict[str, Path], frames: List[np.ndarray], checks: Checks) -> None:
    """The torch model on CUDA against the same model on the CPU."""
    import torch

    from rd_edge import load_checkpoint
    from rd_edge.core.preprocess import preprocess_bgr

    if not torch.cuda.is_available():
        checks.skip("torch on CUDA", f"torch {torch.__version__} sees no CUDA device (CPU build?)")
        return
    model = load_checkpoint(models["pt"])
    size = tuple(model.config.image_size)
    x = torch.from_numpy(np.stack([preprocess_bgr(f, size, resize=model.config.resize) for f in frames]))
    with torch.no_grad():
        cpu_map, cpu_score = model(x)
        model = model.cuda()
        model(x.cuda())  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        gpu_map, gpu_score = model(x.cuda())
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t) * 1e3 / len(frames)
    got = (gpu_map[:, 0].cpu().numpy(), gpu_score.cpu().numpy(), ms, "cuda")
    # TF32 convolutions on Ampere+ are allowed by torch's default for cuDNN: compare at fp16's bound.
    compare(
        checks, f"torch {torch.__version__} cuda", "fp16", (cpu_map[:, 0].numpy(), cpu_score.numpy()), got
    )


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, type=Path)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    checks = Checks()
    # The model is made from a checkpoint (torch) and compared with ONNX Runtime on the CPU: a
    # runtime-only install (a Jetson) has neither, which is a skip, not a failure.
    missing = [m for m in ("torch", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        checks.skip(
            "every backend on one model",
            f"{', '.join(missing)} not installed (runtime-only install; "
            f"`pip install '.[train,cpu]'` to run this part)",
        )
        return 0

    models = make_models(args.work, args.backbone, args.size, checks)
    plans = build_engines(args.work, models, checks)
    frames = frames_of(models["data"])
    print(
        f"\n{len(frames)} demo frames {frames[0].shape[1]}x{frames[0].shape[0]}, {args.backbone} at {args.size} px; "
        f"reference: ONNX Runtime CPU on the same graph"
    )
    print(
        f"{'backend':<28} {'prec':<5} {'pre':<5} {'max|dmap|':>10} {'max|dscore|':>10} {'Pearson':>9} "
        f"{'limit':>9} {'ms/frame':>8}"
    )
    refs = {
        prec: checks.attempt(f"ORT CPU {prec}", lambda g=models[f"onnx_{prec}"]: run_detector(g, frames))
        for prec in ("fp32", "int8")
    }
    for prec, ref in refs.items():
        if ref is not None:
            compare(checks, "onnxruntime CPU (reference)", prec, ref, ref)
    from rd_edge.runtime.backends.onnxruntime import _import_onnxruntime

    available = _import_onnxruntime().get_available_providers()
    for provider, label in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
        if label not in available:
            checks.skip(
                f"ORT {provider} provider",
                f"not in onnxruntime's providers {available} (install onnxruntime-gpu: pip install '.[gpu]')",
            )
            continue
        # The TensorRT provider builds its own engine per graph (minutes): fp32 only.
        for prec in ("fp32", "int8") if provider == "cuda" else ("fp32",):
            if refs[prec] is None:
                continue
            got = checks.attempt(
                f"ORT {provider} {prec}",
                lambda g=models[f"onnx_{prec}"]: run_detector(g, frames, providers=[provider], device="cuda"),
            )
            if got is not None:
                compare(checks, f"onnxruntime {provider} EP", prec, refs[prec], got)
    for prec, plan in plans.items():
        ref = refs["int8" if prec == "int8" else "fp32"]
        if ref is None:
            continue
        for cuda_pre in (False, True):  # the engine alone, then with the CUDA preprocessing kernel
            got = checks.attempt(
                f"TensorRT engine {prec}",
                lambda plan=plan, c=cuda_pre: run_detector(plan, frames, cuda_preprocess=c),
            )
            if got is not None:
                compare(
                    checks,
                    "TensorRT engine (Detector)",
                    prec,
                    ref,
                    got,
                    slack=PREPROCESS_SLACK if got[3] == "cuda" else 0.0,
                )
    checks.attempt("torch on CUDA", lambda: check_torch_cuda(models, frames, checks))

    print("\nskipped:" if checks.skipped else "\nskipped: none")
    for what, why in checks.skipped:
        print(f"  {what}: {why}")
    if checks.failed:
        print("FAILED:\n  " + "\n  ".join(checks.failed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
