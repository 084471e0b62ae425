"""The checks of scripts/device_check.sh, one per call: prints ``PASS|FAIL|SKIP <name>: <detail>``.

    python scripts/device_check.py --list
    python scripts/device_check.py --check engine-fp16 --work DIR [--dry-run]

Each check runs in its own process under the shell script's time limit and leaves what later
checks need in ``--work`` (the model, its graphs, the fp32 plan). With ``--dry-run`` (what
``make test`` runs) or without an NVIDIA GPU every check that needs one prints SKIP with the
reason; the rest of the script is exercised all the same.

What is compared, and within what (the same bounds as the test suite):
- TensorRT engines (fp32/fp16/int8, dynamic batch 1..4 at batches 1 and 3, a fixed batch of 2)
  against ONNX Runtime on the CPU running the same graph: max |d map| and |d score| within
  1e-3 / 1e-2 / 5e-2; the second build of the fp32 engine reloads the timing cache;
- CUDA preprocessing (pycuda) and the tile kernel against the CPU path, within 1/255;
- a runner made in one thread and closed in another: zero warnings, no context current in
  either thread afterwards (cuCtxGetCurrent NULL);
- where TensorRT or pycuda cannot be installed: the same kernel source through CuPy's
  RawKernel, the torch model on CUDA against the CPU (1e-2: TF32) with its fp16 latency, and
  pycuda built from a carried sdist (``PYCUDA_SDIST`` or ``.whl/pycuda-*.tar.gz``).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SIZE = 64  # px: a resnet18 model small enough to build three engines well inside the budget
PARITY = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}  # as tests/export/test_tensorrt.py
PIXEL = 1 / 255 + 1e-6  # CUDA preprocessing vs the CPU path, as tests/runtime/test_cuda_preprocess.py


class Skip(Exception):
    """The check cannot run here; the message says why."""


def need(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise Skip(f"{', '.join(missing)} not installed")


def gpu_reason() -> Optional[str]:
    """None when an NVIDIA GPU is visible, else why not."""
    if Path(os.environ.get("RD_EDGE_TEGRA_RELEASE", "/etc/nv_tegra_release")).is_file():
        return None
    if not shutil.which("nvidia-smi"):
        return "no NVIDIA GPU (nvidia-smi not found, not a Jetson)"
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return None if proc.returncode == 0 and proc.stdout.strip() else "nvidia-smi finds no GPU"


# --- the model (CPU) -------------------------------------------------------------------------


def check_model(work: Path) -> str:
    """A random-weight resnet18 checkpoint, its fp32 graph and its TensorRT-flavour int8 graph."""
    need("torch", "onnx", "onnxruntime")
    from rd_edge.checkpoint import random_checkpoint as make_checkpoint
    from rd_edge.data import write_demo_dataset
    from rd_export.onnx_export import export_onnx
    from rd_export.quantize import quantize_int8

    (category,) = write_demo_dataset(
        work / "data",
        categories=["weave"],
        image_size=SIZE,
        n_train=8,
        n_test_good=2,
        n_test_per_defect=1,
        seed=0,
    )
    pt = make_checkpoint(work / "model.pt", "resnet18", SIZE, data_dir=str(category))
    export_onnx(pt, work / "model.onnx")
    quantize_int8(work / "model.onnx", work / "model_int8.onnx", category, target="tensorrt", max_images=8)
    return f"resnet18 {SIZE} px: model.onnx, model_int8.onnx"


def model_files(work: Path) -> Dict[str, Path]:
    files = {"fp32": work / "model.onnx", "int8": work / "model_int8.onnx", "pt": work / "model.pt"}
    if not files["fp32"].is_file():
        raise Skip("no model: the 'model' check did not pass")
    return files


def images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).random((n, 3, SIZE, SIZE), dtype=np.float32)


# --- TensorRT engines ----------------------------------------------------------------------


def engine_parity(plan: Path, onnx_path: Path, batches: Tuple[int, ...]) -> Tuple[float, float]:
    """max |d map|, |d score| of the plan against ONNX Runtime CPU on the same graph."""
    from rd_edge.runtime import load_runner
    from rd_export.verify import run_onnxruntime

    x = images(sum(batches))
    ref_map, ref_score = run_onnxruntime(onnx_path, x)
    outs, start = [], 0
    with load_runner(plan) as runner:
        for n in batches:
            outs.append(runner.infer({"image": x[start : start + n]}))
            start += n
    amap = np.concatenate([o["anomaly_map"] for o in outs]).reshape(ref_map.shape)
    score = np.concatenate([o["score"] for o in outs]).reshape(ref_score.shape)
    return float(np.abs(amap - ref_map).max()), float(np.abs(score - ref_score).max())


def check_engine(work: Path, precision: str, source: Optional[Path] = None) -> str:
    need("tensorrt", "pycuda")
    from rd_edge.runtime.backends.trt.builder import build_engine

    files = model_files(work)
    source = source or (files["int8"] if precision == "int8" else files["fp32"])
    plan = work / f"model_{precision}.engine"
    report = build_engine(source, plan, precision=precision, max_batch=4, timing_cache=work / "timing.cache")
    d_map, d_score = engine_parity(plan, source, (1, 3))
    detail = (
        f"TensorRT {report.tensorrt_version} {report.gpu}: max|d map| {d_map:.2e} max|d score| "
        f"{d_score:.2e} (tolerance {PARITY[precision]:g}), built in {report.seconds:.1f} s"
    )
    if max(d_map, d_score) > PARITY[precision]:
        raise AssertionError(detail)
    return detail


def check_engine_fp16(work: Path) -> str:
    """fp16: TensorRT 10 from the fp32 graph (FP16 flag); 11 from the fp16 graph written first,
    as rd-export does (its networks are strongly typed)."""
    need("tensorrt", "pycuda")
    import tensorrt

    if int(tensorrt.__version__.split(".")[0]) < 11:
        return check_engine(work, "fp16")
    from rd_export.half import fp16_graph

    half = fp16_graph(model_files(work)["fp32"], work / "model_fp16.onnx")
    return check_engine(work, "fp16", half) + " (from the fp16 graph)"


def check_engine_static(work: Path) -> str:
    """A graph with a fixed batch of 2 (rd-export --batch 2): batches 1 and 2 both run at 2."""
    need("tensorrt", "pycuda", "onnx")
    import onnx

    from rd_edge.core.sidecar import EngineSidecar
    from rd_edge.runtime.backends.trt.builder import build_engine

    graph = onnx.load(str(model_files(work)["fp32"]))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    static = work / "model_b2.onnx"
    onnx.save(graph, str(static))
    plan = work / "model_b2.engine"
    build_engine(static, plan, timing_cache=work / "timing.cache")
    sidecar = EngineSidecar.read(plan)
    if not sidecar.static_batch or sidecar.max_batch != 2:
        raise AssertionError(
            f"sidecar says batch {sidecar.min_batch}..{sidecar.max_batch}, dynamic {sidecar.dynamic_batch}"
        )
    d_map, d_score = engine_parity(plan, static, (1, 2))
    if max(d_map, d_score) > PARITY["fp32"]:
        raise AssertionError(f"max|d map| {d_map:.2e} max|d score| {d_score:.2e} > {PARITY['fp32']:g}")
    return f"batch fixed at 2, runs 1 and 2: max|d map| {d_map:.2e} max|d score| {d_score:.2e}"


def check_timing_cache(work: Path) -> str:
    """A second build reads the cache the first one wrote."""
    need("tensorrt", "pycuda")
    from rd_edge.runtime.backends.trt.builder import build_engine

    cache = work / "timing.cache"
    if not cache.is_file():
        raise Skip("no timing cache: no engine was built before")
    size = cache.stat().st_size
    report = build_engine(
        model_files(work)["fp32"], work / "model_again.engine", max_batch=4, timing_cache=cache
    )
    if f"loaded {size} bytes" not in (report.timing_cache or ""):
        raise AssertionError(f"the cache of {size} bytes was not loaded: {report.timing_cache}")
    return f"reloaded {size} bytes; rebuild took {report.seconds:.1f} s"


# --- CUDA preprocessing and threads ----------------------------------------------------------


def frames() -> List[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((480, 640), (37, 101), (64, 64))]


def check_cuda_preprocess(work: Path) -> str:
    need("pycuda")
    from rd_edge.core.preprocess import RESIZE_AREA_LINEAR, preprocess_bgr
    from rd_edge.runtime.backends.trt.util import ContextOwner
    from rd_edge.runtime.cuda_preprocess import CudaPreprocessor
    from rd_edge.runtime.cuda_tiles import CudaTilePreprocessor

    owner = ContextOwner(0)
    cuda = owner.cuda
    batch = frames()

    def run() -> Tuple[np.ndarray, np.ndarray]:
        stream = cuda.Stream()
        pre, tiles = (
            CudaPreprocessor((SIZE, SIZE), stream, RESIZE_AREA_LINEAR),
            CudaTilePreprocessor((SIZE, SIZE), stream),
        )
        out = np.empty((len(batch) + 2, 3, SIZE, SIZE), np.float32)
        dst = cuda.mem_alloc(out.nbytes)
        for i, f in enumerate(batch):
            pre.enqueue(f, int(dst), i)
        tiles.enqueue_tiles(batch[0], [(0, 0), (100, 200)], int(dst), len(batch))
        stream.synchronize()
        cuda.memcpy_dtoh(out, dst)
        pre.close()
        tiles.close()
        dst.free()
        return out[: len(batch)], out[len(batch) :]

    try:
        resized, tiled = owner.call(run)
    finally:
        owner.close()
    d_resize = max(
        float(np.abs(r - preprocess_bgr(f, (SIZE, SIZE), resize=RESIZE_AREA_LINEAR)).max())
        for r, f in zip(resized, batch)
    )
    crops = [batch[0][y : y + SIZE, x : x + SIZE] for y, x in ((0, 0), (100, 200))]
    d_tiles = max(
        float(
            np.abs(t - preprocess_bgr(np.ascontiguousarray(c), (SIZE, SIZE), resize=RESIZE_AREA_LINEAR)).max()
        )
        for t, c in zip(tiled, crops)
    )
    detail = f"resize max|d| {d_resize:.2e}, tiles max|d| {d_tiles:.2e} (tolerance 1/255)"
    if max(d_resize, d_tiles) > PIXEL:
        raise AssertionError(detail)
    return detail


def current_context() -> int:
    lib = ctypes.CDLL("libcuda.so.1")
    ctx = ctypes.c_void_p()
    lib.cuCtxGetCurrent(ctypes.byref(ctx))
    return ctx.value or 0


def check_thread_close(work: Path) -> str:
    """A Detector made here, run and closed in another thread (as the pipeline does)."""
    need("tensorrt", "pycuda")
    from rd_edge.runtime import Detector

    plan = work / "model_fp32.engine"
    if not plan.is_file():
        raise Skip("no fp32 engine: the 'engine-fp32' check did not pass")
    seen: Dict[str, object] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = Detector(plan, batch_size=2)

        def other() -> None:
            try:
                seen["scores"] = [p.score for p in detector.predict(frames()[:2])]
                detector.close()
                gc.collect()
                seen["current"] = current_context()
            except BaseException:  # noqa: BLE001 - reported below
                seen["error"] = traceback.format_exc(limit=3)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(60)
        gc.collect()
    if "error" in seen:
        raise AssertionError(seen["error"])
    problems = [f"warning: {w.message}" for w in caught]
    if seen.get("current"):
        problems.append(f"cuCtxGetCurrent in the closing thread: {seen['current']:#x}")
    if current_context():
        problems.append(f"cuCtxGetCurrent in the main thread: {current_context():#x}")
    if problems:
        raise AssertionError("; ".join(problems))
    # (The primary context itself stays active: the CUDA runtime inside TensorRT keeps its own
    # retain until the process ends, so its state says nothing about our release.)
    return f"preprocessing {detector.preprocess_device}, 0 warnings, cuCtxGetCurrent NULL in both threads"


# --- without TensorRT/pycuda ------------------------------------------------------------------


def check_cupy_kernels(work: Path) -> str:
    """The preprocessing kernels' own source through CuPy's RawKernel, against the CPU path."""
    need("cupy")
    import cupy

    from rd_edge.core.metadata import RESIZE_AREA_LINEAR, RESIZE_LINEAR
    from rd_edge.core.preprocess import preprocess_bgr
    from rd_edge.runtime.cuda_preprocess import KERNEL_NAMES, KERNEL_SOURCE

    worst = {}
    for rule in (RESIZE_AREA_LINEAR, RESIZE_LINEAR):
        kernel = cupy.RawKernel(KERNEL_SOURCE, KERNEL_NAMES[rule])
        for f in frames():
            dst = cupy.empty((3, SIZE, SIZE), cupy.float32)
            grid = ((SIZE + 31) // 32, (SIZE + 7) // 8, 1)
            # the runtime's launch arguments (CudaPreprocessor._enqueue)
            kernel(
                grid,
                (32, 8, 1),
                (
                    cupy.asarray(f),
                    np.int32(f.shape[0]),
                    np.int32(f.shape[1]),
                    dst,
                    np.int32(SIZE),
                    np.int32(SIZE),
                    np.float32(f.shape[0] / SIZE),
                    np.float32(f.shape[1] / SIZE),
                ),
            )
            d = float(np.abs(cupy.asnumpy(dst) - preprocess_bgr(f, (SIZE, SIZE), resize=rule)).max())
            worst[rule] = max(worst.get(rule, 0.0), d)
    detail = ", ".join(f"{rule} max|d| {d:.2e}" for rule, d in worst.items()) + f" (CuPy {cupy.__version__})"
    if max(worst.values()) > PIXEL:
        raise AssertionError(detail)
    return detail


def check_torch_cuda(work: Path) -> str:
    """The torch model on CUDA against the CPU, and its fp16 latency."""
    need("torch")
    import torch

    from rd_edge import load_checkpoint

    if not torch.cuda.is_available():
        raise Skip(f"torch {torch.__version__} sees no CUDA device")
    model = load_checkpoint(model_files(work)["pt"]).eval()
    x = torch.from_numpy(images(8))
    with torch.no_grad():
        cpu_map, cpu_score = model(x)
        model = model.cuda()
        gpu_map, gpu_score = model(x.cuda())
        d = max(
            float((gpu_map.cpu() - cpu_map).abs().max()), float((gpu_score.cpu() - cpu_score).abs().max())
        )
        with torch.autocast("cuda", dtype=torch.float16):
            for _ in range(3):
                model(x.cuda())
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(20):
                model(x.cuda())
            torch.cuda.synchronize()
    ms = (time.perf_counter() - t) * 1e3 / 20
    detail = (
        f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}: max|d| {d:.2e} vs CPU "
        f"(tolerance {PARITY['fp16']:g}, TF32); fp16 autocast batch 8: {ms:.2f} ms"
    )
    if d > PARITY["fp16"]:
        raise AssertionError(detail)
    return detail


def check_pycuda_sdist(work: Path) -> str:
    """pycuda built from a carried sdist (the device has no network) into the work folder."""
    candidates = (
        [Path(os.environ["PYCUDA_SDIST"])]
        if os.environ.get("PYCUDA_SDIST")
        else sorted((ROOT / ".whl").glob("pycuda-*.tar.gz"))
    )
    if not candidates or not candidates[0].is_file():
        raise Skip("no pycuda sdist carried (set PYCUDA_SDIST or put pycuda-*.tar.gz in .whl/)")
    if not shutil.which("nvcc"):
        raise Skip("nvcc not found: pycuda builds against the CUDA toolkit")
    target = work / "pycuda-site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(candidates[0]),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise AssertionError(f"pip could not build {candidates[0].name}: {proc.stderr.strip()[-300:]}")
    probe = subprocess.run(
        [sys.executable, "-c", "import pycuda.autoinit, pycuda.driver as d; print(d.Device(0).name())"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    if probe.returncode != 0:
        raise AssertionError(probe.stderr.strip()[-300:])
    return f"built {candidates[0].name}; sees {probe.stdout.strip()}"


# --- the list ---------------------------------------------------------------------------------

# name -> (function, the Python packages it needs); every check needs an NVIDIA GPU.
CHECKS: Dict[str, Tuple[Callable[[Path], str], Tuple[str, ...]]] = {
    "model": (check_model, ("torch", "onnx", "onnxruntime")),  # CPU work, for the checks below
    "engine-fp32": (lambda w: check_engine(w, "fp32"), ("tensorrt", "pycuda", "onnxruntime")),
    "engine-fp16": (check_engine_fp16, ("tensorrt", "pycuda", "onnxruntime")),
    "engine-int8": (lambda w: check_engine(w, "int8"), ("tensorrt", "pycuda", "onnxruntime")),
    "engine-static": (check_engine_static, ("tensorrt", "pycuda", "onnx", "onnxruntime")),
    "timing-cache": (check_timing_cache, ("tensorrt", "pycuda")),
    "cuda-preprocess": (check_cuda_preprocess, ("pycuda",)),
    "thread-close": (check_thread_close, ("tensorrt", "pycuda")),
    "cupy-kernels": (check_cupy_kernels, ("cupy",)),
    "torch-cuda": (check_torch_cuda, ("torch",)),
    "pycuda-sdist": (check_pycuda_sdist, ()),
}


def run_check(name: str, work: Path, dry_run: bool) -> Tuple[str, str]:
    fn, modules = CHECKS[name]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    here = "; ".join(filter(None, [gpu_reason(), f"{', '.join(missing)} not installed" if missing else ""]))
    if dry_run:
        return "SKIP", f"dry run, no GPU used (here: {here or 'everything it needs is present'})"
    reason = gpu_reason()
    if reason:
        return "SKIP", reason + (f"; {', '.join(missing)} not installed" if missing else "")
    try:
        return "PASS", fn(work)
    except Skip as exc:
        return "SKIP", str(exc)
    except Exception as exc:  # noqa: BLE001 - one line per check; the traceback goes to stderr
        traceback.print_exc()
        return "FAIL", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="print the check names, in order")
    p.add_argument("--check", choices=sorted(CHECKS))
    p.add_argument("--work", type=Path, default=Path("/tmp/rd_device_check"))
    p.add_argument("--dry-run", action="store_true", help="skip every check that needs a GPU")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(CHECKS))
        return 0
    if args.check is None:
        p.error("--check NAME or --list")
    args.work.mkdir(parents=True, exist_ok=True)
    status, detail = run_check(args.check, args.work, args.dry_run)
    print(f"{status} {args.check}: {detail}", flush=True)
    return 1 if status == "FAIL" else 0


if __name__ == "__main__":
    raise SystemExit(main())
