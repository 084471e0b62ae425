"""What this machine runs: the tensorrt and pycuda modules, the TensorRT version, the GPU.

Shared by the engine builder and the runner. tensorrt and pycuda are declared here once and
imported on first use (a runtime-only install without them still imports this module).
"""
from __future__ import annotations

import re
from typing import Any, Optional, Tuple

from rd_edge.core.errors import BackendError
from rd_edge.core.optional import lazy_import
from rd_edge.core.sidecar import format_compute_capability

TRT_INSTALL_HINT = ("on a Jetson it comes with JetPack (python3-libnvinfer), elsewhere "
                    "`pip install rd-edge[gpu]`")
PYCUDA_INSTALL_HINT = "`pip install rd-edge[gpu]`, or `pip install rd-edge[jetson]` on a Jetson"

trt = lazy_import("tensorrt", "the TensorRT backend", TRT_INSTALL_HINT)
pycuda_driver = lazy_import("pycuda.driver", "the TensorRT backend and CUDA preprocessing", PYCUDA_INSTALL_HINT)


def import_tensorrt() -> Any:
    """The tensorrt module; BackendError naming what installs it."""
    return trt.load()


def import_pycuda_driver() -> Any:
    """pycuda.driver, initialised; BackendError naming the extra when missing."""
    cuda = pycuda_driver.load()
    try:
        cuda.init()
    except Exception as exc:  # pycuda raises its own RuntimeError/LogicError subclasses
        raise BackendError(f"CUDA is not usable here (no NVIDIA GPU or driver?): {exc}") from exc
    return cuda


def tensorrt_version() -> str:
    """The running TensorRT version string, e.g. "10.3.0"."""
    return str(import_tensorrt().__version__)


def tensorrt_major(module: Any = None) -> int:
    """Major version of the tensorrt module ("10.3.0" -> 10)."""
    version = str((module or import_tensorrt()).__version__)
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise BackendError(f"cannot parse the TensorRT version {version!r}") from None


def gpu_identity(device_id: int = 0) -> Tuple[str, str]:
    """(name, "major.minor" compute capability) of CUDA device ``device_id``: pycuda, else
    cuda-python (a build machine may have only that). The name is the driver's."""
    try:
        return _pycuda_identity(device_id)
    except BackendError as exc:
        pycuda_error = str(exc)
    try:
        return _cuda_python_identity(device_id)
    except ImportError:
        pass
    raise BackendError(f"cannot identify the GPU: {pycuda_error}; install pycuda or cuda-python")


def _pycuda_identity(device_id: int) -> Tuple[str, str]:
    cuda = import_pycuda_driver()
    if not 0 <= device_id < cuda.Device.count():
        raise BackendError(f"CUDA device {device_id} does not exist; found {cuda.Device.count()} device(s)")
    device = cuda.Device(device_id)
    return str(device.name()), format_compute_capability(tuple(device.compute_capability()))


def _cuda_python_identity(device_id: int) -> Tuple[str, str]:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python; ImportError when neither is installed
    err, props = cudart.cudaGetDeviceProperties(device_id)
    if int(err) != 0:
        raise BackendError(f"CUDA device {device_id} is not usable: cudaGetDeviceProperties returned {err}")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00").strip(), format_compute_capability((int(props.major), int(props.minor)))


def device_index(device: Optional[str], device_id: Optional[int]) -> int:
    """CUDA device index from ``device_id`` or a "cuda"/"cuda:N" device string."""
    if device == "cpu":
        raise BackendError("a TensorRT engine runs on the GPU; use device='cuda' (or 'cuda:N'), or run "
                           "the ONNX model on the CPU with backend='ort'")
    if device not in (None, "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise BackendError(f"device {device!r}: expected 'cuda' or 'cuda:N'")
    if device_id is not None:
        return int(device_id)
    return int(device[5:]) if device and device.startswith("cuda:") else 0


def probe() -> Optional[str]:
    """None when TensorRT engines can run here, else why not."""
    for module in (trt, pycuda_driver):
        reason = module.why_missing()
        if reason:
            return reason
    try:
        cuda = import_pycuda_driver()
        if cuda.Device.count() == 0:
            return "no CUDA device found"
    except BackendError as exc:
        return str(exc)
    return None
