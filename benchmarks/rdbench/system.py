"""The machine and the model: description, GFLOP per image, the CPU's fp32 peak GFLOP/s.

GFLOP here are floating-point operations, one multiply-accumulate = 2 FLOP (what
torch.utils.flop_counter counts for convolutions and matmuls; elementwise ops are not counted).
The CPU's fp32 peak is given two ways (see :func:`cpu_peak`): measured (the best large sgemm of
the BLAS libraries at hand, on the benchmark's thread count: an achievable peak) and nominal
(cores x clock x fp32 FLOP per cycle from the vector/FMA units the CPU flags imply).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from typing import Any, Callable, Dict, Optional

import numpy as np

# Distribution names whose versions the report lists (the first installed one of each group).
VERSION_DISTS = {
    "numpy": ("numpy",),
    "torch": ("torch",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "onnx": ("onnx",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "scipy": ("scipy",),
    "tensorrt": ("tensorrt",),
    "pycuda": ("pycuda",),
    "rd-edge": ("rd-edge",),
}
CPU_FLAGS_OF_INTEREST = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
)


def cpu_count() -> int:
    """CPUs this process may run on (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def read_cpuinfo() -> Dict[str, str]:
    """The first processor block of /proc/cpuinfo as a dict ({} where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            block = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    info = {}
    for line in block.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


def _versions() -> Dict[str, Optional[str]]:
    found: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for name, dists in VERSION_DISTS.items():
        found[name] = None
        for dist in dists:
            try:
                found[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def gpu_names() -> Optional[str]:
    """``nvidia-smi -L`` names, or None without an NVIDIA driver."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def load_average() -> Optional[list]:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def system_info(threads: int) -> Dict[str, Any]:
    """What the report is labelled with: CPU, cores, threads, GPU, versions, load."""
    cpu = read_cpuinfo()
    flags = set(cpu.get("flags", "").split())
    return {
        "cpu": cpu.get("model name") or platform.processor() or platform.machine(),
        "cpu_vendor": cpu.get("vendor_id"),
        "cpu_family": cpu.get("cpu family"),
        "cpu_mhz": float(cpu["cpu MHz"]) if "cpu MHz" in cpu else None,
        "cpu_flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags],
        "cores": cpu_count(),
        "threads": threads,
        "gpu": gpu_names(),
        "platform": platform.platform(),
        "versions": _versions(),
        "load_average_start": load_average(),
    }


# --- the model --------------------------------------------------------------------------------


def model_gflop(checkpoint: str) -> Dict[str, Any]:
    """GFLOP per image of the fused module at batch 1, total and per part (FlopCounterMode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import rd_edge

    model = rd_edge.load_checkpoint(checkpoint).eval()
    h, w = model.config.image_size
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, h, w))
    counts = counter.get_flop_counts()
    parts = {
        name.split(".", 1)[1]: sum(ops.values()) / 1e9
        for name, ops in counts.items()
        if name.count(".") == 2 or name in ("RDInference.rd", "RDInference.head")
    }
    return {
        "backbone": model.config.backbone,
        "image_size": [h, w],
        "gflop_per_image": counter.get_total_flops() / 1e9,
        "parts_gflop": parts,
        "counting": "FLOP = 2 x multiply-accumulates of convolutions and matmuls "
        "(torch.utils.flop_counter.FlopCounterMode, batch 1)",
    }


# --- the CPU's fp32 peak ------------------------------------------------------------------------


def best_gflops(fn: Callable[[], Any], n: int, repeats: int) -> float:
    """Best-of-``repeats`` GFLOP/s of an n x n x n sgemm ``fn`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def _torch_sgemm(n: int, threads: int, repeats: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    out = torch.empty(n, n)
    return best_gflops(lambda: torch.mm(a, b, out=out), n, repeats)


def _numpy_sgemm(n: int, threads: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy's BLAS then uses its own default (one thread per core)
        return best_gflops(lambda: np.matmul(a, b, out=out), n, repeats)
    with threadpool_limits(threads):
        return best_gflops(lambda: np.matmul(a, b, out=out), n, repeats)


def ort_matmul_session(op: str, a_type: int, b: np.ndarray, out_type: int, threads: int) -> Any:
    """An ONNX Runtime CPU session of one ``op`` ("MatMul", "MatMulInteger"): input ``a`` [n,n] of
    ``a_type`` times the constant ``b`` (onnx TensorProto types)."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    n = b.shape[0]
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info("a", a_type, [n, n])],
        [helper.make_tensor_value_info("c", out_type, [n, n])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _ort_sgemm(n: int, threads: int, repeats: int) -> float:
    """ONNX Runtime's own MatMul (MLAS), the kernels the ``ort`` rows' convolutions use."""
    from onnx import TensorProto

    rng = np.random.default_rng(0)
    session = ort_matmul_session(
        "MatMul", TensorProto.FLOAT, rng.random((n, n), dtype=np.float32), TensorProto.FLOAT, threads
    )
    a = rng.random((n, n), dtype=np.float32)
    return best_gflops(lambda: session.run(None, {"a": a}), n, repeats)


SGEMM_LIBRARIES: Dict[str, Callable[[int, int, int], float]] = {
    "torch.mm (oneMKL)": _torch_sgemm,
    "numpy.matmul (its BLAS)": _numpy_sgemm,
    "onnxruntime MatMul (MLAS)": _ort_sgemm,
}


def fp32_flop_per_cycle(cpu: Dict[str, str]) -> Optional[Dict[str, Any]]:
    """fp32 FLOP per cycle per core implied by the CPU flags, with the assumption stated.

    Flags say which vectors exist, not how many FMA pipes: AMD Zen 5 (family 26) has two
    512-bit FMA pipes, Zen 4 (family 25 with AVX-512) runs 512-bit ops on two 256-bit pipes;
    Intel AVX-512 server cores are assumed to have two 512-bit FMA ports (some have one).
    """
    flags = set(cpu.get("flags", "").split())
    family = int(cpu.get("cpu family", "0") or 0)
    amd = cpu.get("vendor_id") == "AuthenticAMD"
    if "avx512f" in flags and "fma" in flags:
        if amd and family < 26:
            return {
                "flop_per_cycle": 32,
                "basis": "AVX-512 on two 256-bit FMA pipes (AMD Zen 4): 2 x 8 lanes x 2",
            }
        units = "two 512-bit FMA pipes (AMD Zen 5)" if amd else "two 512-bit FMA ports (assumed)"
        return {"flop_per_cycle": 64, "basis": f"AVX-512 with {units}: 2 x 16 fp32 lanes x 2 (FMA)"}
    if "avx2" in flags and "fma" in flags:
        return {"flop_per_cycle": 32, "basis": "AVX2 with two 256-bit FMA units: 2 x 8 lanes x 2"}
    if "avx" in flags:
        return {"flop_per_cycle": 16, "basis": "AVX, separate 256-bit add and multiply"}
    return None


def nominal_peak(threads: int) -> Optional[Dict[str, Any]]:
    """threads x clock x FLOP/cycle, with the clock /proc/cpuinfo reports (base, not boost)."""
    cpu = read_cpuinfo()
    per_cycle = fp32_flop_per_cycle(cpu)
    if per_cycle is None or "cpu MHz" not in cpu:
        return None
    ghz = float(cpu["cpu MHz"]) / 1000.0
    cores = min(threads, cpu_count())
    return {
        "gflops": cores * ghz * per_cycle["flop_per_cycle"],
        "cores": cores,
        "ghz": ghz,
        **per_cycle,
        "clock_basis": "cpu MHz in /proc/cpuinfo (under a hypervisor: the TSC "
        "rate; the real clock may boost above it)",
    }


def cpu_peak(threads: int, n: int = 2048, repeats: int = 8) -> Dict[str, Any]:
    """Measured and nominal fp32 peak GFLOP/s on ``threads`` threads.

    ``achievable_gflops`` (the best measured sgemm) is what the report's ``peak_fraction``
    divides by: a rate real kernels reach on this machine as it is configured, turbo, SMT
    and hypervisor included. The nominal figure is there for comparison.
    """
    measured: Dict[str, Any] = {}
    for name, fn in SGEMM_LIBRARIES.items():
        try:
            measured[name] = round(fn(n, threads, repeats), 1)
        except ImportError as exc:
            measured[name] = f"not measured: {exc}"
    numbers = [v for v in measured.values() if isinstance(v, float)]
    best = max(numbers) if numbers else None
    nominal = nominal_peak(threads)
    if nominal and best:
        # The clock the best sgemm implies if it ran at the nominal FLOP/cycle: above the
        # reported clock means the cores boost (or the FLOP/cycle assumption is too low).
        nominal["implied_ghz"] = round(best / (nominal["cores"] * nominal["flop_per_cycle"]), 2)
    return {
        "achievable_gflops": best,
        "method": f"best of {repeats} fp32 {n}x{n}x{n} matrix products per library, {threads} threads",
        "measured_sgemm_gflops": measured,
        "nominal": nominal,
    }
