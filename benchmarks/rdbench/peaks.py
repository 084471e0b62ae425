"""Measured low-precision peaks of this CPU: large GEMMs in bf16 and int8, the limits the
OpenVINO and int8 rows are compared with (the fp32 peak is system.cpu_peak).

Each is the best of ``repeats`` ``n x n x n`` products through the library the rows use:
OpenVINO MatMul with the bf16 inference hint (oneDNN: AVX-512 BF16 or AMX where present),
OpenVINO MatMul between int8 FakeQuantize'd operands (oneDNN int8: VNNI or AMX), ONNX Runtime
MatMulInteger u8 x s8 (MLAS). GOPS count 2 x multiply-accumulates, as the fp32 GFLOP/s do.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np

from .system import best_gflops, ort_matmul_session


def _ov_matmul(n: int, threads: int, repeats: int, int8: bool) -> float:
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([n, n], np.float32, name="a")
    b = ops.constant(rng.random((n, n), dtype=np.float32) - 0.5)
    lhs, rhs = a.output(0), b.output(0)
    if int8:  # the pattern NNCF writes: FakeQuantize on activations (u8) and weights (i8)
        lo, hi = ops.constant(np.float32(0.0)), ops.constant(np.float32(1.0))
        wlo, whi = ops.constant(np.float32(-0.5)), ops.constant(np.float32(0.5))
        lhs = ops.fake_quantize(a, lo, hi, lo, hi, 256).output(0)
        rhs = ops.fake_quantize(b, wlo, whi, wlo, whi, 255).output(0)
    model = ov.Model([ops.matmul(lhs, rhs, False, False)], [a])
    hint = "f32" if int8 else "bf16"
    compiled = ov.Core().compile_model(
        model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads}
    )
    request = compiled.create_infer_request()
    x = rng.random((n, n), dtype=np.float32)
    return best_gflops(lambda: request.infer({"a": x}), n, repeats)


def _ort_u8s8(n: int, threads: int, repeats: int) -> float:
    from onnx import TensorProto

    rng = np.random.default_rng(0)
    session = ort_matmul_session(
        "MatMulInteger",
        TensorProto.UINT8,
        rng.integers(-127, 128, (n, n), dtype=np.int8),
        TensorProto.INT32,
        threads,
    )
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    return best_gflops(lambda: session.run(None, {"a": a}), n, repeats)


PEAKS: Dict[str, Callable[[int, int, int], float]] = {
    "openvino_bf16_gemm": lambda n, t, r: _ov_matmul(n, t, r, int8=False),
    "openvino_int8_gemm": lambda n, t, r: _ov_matmul(n, t, r, int8=True),
    "ort_u8s8_gemm": _ort_u8s8,
}


def low_precision_peaks(threads: int, n: int = 2048, repeats: int = 8) -> Dict[str, Any]:
    """{"bf16_gops", "int8_gops", "measured": {name: GOPS or why not}, "method"}."""
    measured: Dict[str, Any] = {}
    for name, fn in PEAKS.items():
        try:
            measured[name] = round(fn(n, threads, repeats), 1)
        except Exception as exc:  # a missing package or a CPU without the instructions
            measured[name] = f"not measured: {type(exc).__name__}: {exc}"

    def best(*names: str) -> Any:
        values = [measured[k] for k in names if isinstance(measured[k], float)]
        return max(values) if values else None

    return {
        "bf16_gops": best("openvino_bf16_gemm"),
        "int8_gops": best("openvino_int8_gemm", "ort_u8s8_gemm"),
        "measured": measured,
        "method": f"best of {repeats} {n}x{n}x{n} products, {threads} threads",
    }
