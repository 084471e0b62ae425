"""The model files a run needs, made through the public APIs when the user did not pass them.

- fp32 ONNX: ``rd_export.onnx_export.export_onnx`` (verification off: every row's scores are
  compared with ``reference`` on the same frames instead).
- int8 Q/DQ ONNX: ``rd_export.quantize.quantize_int8``, calibrated on the benchmark's frames.
- TensorRT plans: ``rd_edge.runtime.backends.trt.builder.build_engine`` (only where TensorRT runs).

Failures that mean "this backend cannot run here" are BackendUnavailable with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .errors import BackendUnavailable, BenchmarkError

INT8_CALIBRATION_FRAMES = 8  # latency does not depend on calibration quality; keep the run short


def _given_file(path: Path, flag: str) -> Path:
    """A model path the user passed: it must exist."""
    if not path.is_file():
        raise BenchmarkError(f"{flag} {path}: no such file")
    return path


def ensure_onnx(checkpoint: Path, onnx_path: Optional[Path], workdir: Path) -> Path:
    """``onnx_path`` if given, else a dynamic-batch fp32 export of ``checkpoint`` in ``workdir``."""
    if onnx_path is not None:
        return _given_file(onnx_path, "--onnx")
    try:
        from rd_export.onnx_export import export_onnx
    except ImportError as exc:
        raise BackendUnavailable(
            f"no --onnx given and the exporter cannot be imported (`pip install '.[train]'`): {exc}"
        ) from exc
    out = workdir / f"{checkpoint.stem}.onnx"
    export_onnx(checkpoint, out, batch="dynamic", precision="fp32", verify=False)
    return out


def write_int8_calibration_frames(frames: Sequence[np.ndarray], folder: Path) -> Path:
    """The frames as PNG files, the folder layout quantize_int8 reads."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        if not cv2.imwrite(str(folder / f"frame_{i:03d}.png"), frame):
            raise BenchmarkError(f"cannot write calibration frame to {folder}")
    return folder


def ensure_int8(
    onnx_int8: Optional[Path],
    onnx_fp32: Path,
    frames: Sequence[np.ndarray],
    workdir: Path,
    target: str = "cpu",
) -> Path:
    """``onnx_int8`` if given, else a Q/DQ copy of ``onnx_fp32`` (``target`` flavour).

    BackendUnavailable (the row's skip reason) when no quantizer is importable or it fails.
    """
    if onnx_int8 is not None:
        return _given_file(onnx_int8, "--onnx-int8")
    try:
        from rd_export.quantize import quantize_int8
    except ImportError as exc:
        raise BackendUnavailable(
            f"no --onnx-int8 given and rd_export.quantize.quantize_int8 is not "
            f"importable ({exc}); pass --onnx-int8 PATH"
        ) from exc
    from rd_edge.core.errors import RdEdgeError

    calib = write_int8_calibration_frames(
        frames[:INT8_CALIBRATION_FRAMES], workdir / f"int8_calibration_{target}"
    )
    out = workdir / f"{onnx_fp32.stem}_int8_{target}.onnx"
    try:
        quantize_int8(onnx_fp32, out, calib, target=target, max_images=INT8_CALIBRATION_FRAMES)
    except RdEdgeError as exc:
        raise BackendUnavailable(f"int8 quantization ({target}) failed: {exc}") from exc
    return out


def ensure_openvino(onnx_fp32: Path, frames: Sequence[np.ndarray], workdir: Path) -> Tuple[Path, Path, bool]:
    """(fp32 IR, NNCF int8 IR with the head float, whether the CPU runs bf16), made in ``workdir``."""
    from rd_edge.core.errors import RdEdgeError

    try:
        from rd_edge.runtime import cpu_capabilities
        from rd_export.openvino_export import export_ir
        from rd_export.openvino_int8 import quantize_ir
    except ImportError as exc:
        raise BackendUnavailable(
            f"the OpenVINO exporter cannot be imported ({exc}): `pip install '.[openvino,train]'`"
        ) from exc
    calib = write_int8_calibration_frames(
        frames[:INT8_CALIBRATION_FRAMES], workdir / "int8_calibration_openvino"
    )
    ir, int8 = workdir / f"{onnx_fp32.stem}.xml", workdir / f"{onnx_fp32.stem}_int8.xml"
    try:
        export_ir(onnx_fp32, ir, "fp32")
        quantize_ir(onnx_fp32, int8, calib, max_images=INT8_CALIBRATION_FRAMES)  # scope full
    except RdEdgeError as exc:
        raise BackendUnavailable(f"OpenVINO IR export failed: {exc}") from exc
    return ir, int8, "BF16" in cpu_capabilities()


def engine_precision(plan: Path) -> str:
    """The precision recorded in a plan's sidecar (BenchmarkError when unreadable)."""
    from rd_edge.core.errors import RdEdgeError
    from rd_edge.core.sidecar import EngineSidecar

    try:
        return EngineSidecar.read(plan).precision
    except RdEdgeError as exc:
        raise BenchmarkError(f"--engine {plan}: {exc}") from exc


def build_engines(
    onnx_fp32: Path, frames: Sequence[np.ndarray], workdir: Path, max_batch: int
) -> Tuple[List[Tuple[str, Path]], List[Tuple[str, str]]]:
    """fp32, fp16 and int8 plans (int8 from the tensorrt-flavour Q/DQ graph).

    Returns ([(precision, plan)], [(precision, why it was not built)]).
    """
    from rd_edge.core.errors import RdEdgeError
    from rd_edge.runtime import build_engine

    built: List[Tuple[str, Path]] = []
    failed: List[Tuple[str, str]] = []
    for precision in ("fp32", "fp16", "int8"):
        try:
            source = onnx_fp32
            if precision == "int8":
                source = ensure_int8(None, onnx_fp32, frames, workdir, target="tensorrt")
            plan = workdir / f"{onnx_fp32.stem}_{precision}.engine"
            build_engine(source, plan, precision=precision, max_batch=max_batch)
            built.append((precision, plan))
        except (RdEdgeError, BackendUnavailable) as exc:
            failed.append((precision, str(exc)))
    return built, failed
