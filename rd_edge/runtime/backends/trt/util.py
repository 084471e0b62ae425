"""What this machine runs: the tensorrt and pycuda modules, the TensorRT version, the GPU.

Shared by the engine builder and the runner. tensorrt and pycuda are declared here once and
imported on first use (a runtime-only install without them still imports this module).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import queue
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, TypeVar

from rd_edge.core.errors import BackendError
from rd_edge.core.optional import lazy_import
from rd_edge.core.sidecar import GpuInfo, format_compute_capability

# The pip extras per CUDA major version (README, "Install"): TensorRT's wheels are built per CUDA.
GPU_EXTRAS = (
    "`pip install '.[gpu-cu12]'` (TensorRT 10, NVIDIA driver >= 525) or "
    "`pip install '.[gpu-cu13]'` (TensorRT 11, driver >= 580)"
)
TRT_INSTALL_HINT = f"on a Jetson it comes with JetPack (python3-libnvinfer), elsewhere {GPU_EXTRAS}"
PYCUDA_INSTALL_HINT = f"{GPU_EXTRAS}, or `pip install '.[jetson]'` on a Jetson"
# pip distributions that install the tensorrt module, by CUDA flavour (8.x wheels: plain "tensorrt").
_TRT_DISTRIBUTIONS = {
    "cu12": ("tensorrt-cu12", "tensorrt_cu12_bindings", "tensorrt_cu12"),
    "cu13": ("tensorrt-cu13", "tensorrt_cu13_bindings", "tensorrt_cu13"),
}

# Where a Jetson says what it is; overridable so tests (and gpu_check.sh) can play a Jetson.
TEGRA_RELEASE_ENV, DEVICE_TREE_MODEL_ENV = "RD_EDGE_TEGRA_RELEASE", "RD_EDGE_DEVICE_TREE_MODEL"
T = TypeVar("T")
# cuda.h CUstream_flags: a stream that does not synchronize with the legacy default stream
# (the C++ backend's cudaStreamNonBlocking).
CU_STREAM_NON_BLOCKING = 0x1

trt = lazy_import("tensorrt", "the TensorRT backend", TRT_INSTALL_HINT)
pycuda_driver = lazy_import(
    "pycuda.driver", "the TensorRT backend and CUDA preprocessing", PYCUDA_INSTALL_HINT
)


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


def installed_tensorrt_flavour() -> Optional[str]:
    """ "cu12" or "cu13" when a pip TensorRT of that CUDA flavour is installed, else None."""
    for flavour, names in _TRT_DISTRIBUTIONS.items():
        for name in names:
            try:
                importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            return flavour
    return None


def tensorrt_install_hint(version: str) -> str:
    """How to install TensorRT ``version`` (e.g. the one a plan was built with), as one phrase.

    8.x wheels are named ``tensorrt``; from 10 they are per CUDA major version
    (``tensorrt-cu12``, ``tensorrt-cu13``): the flavour installed here, else cu12 for 10.x
    and cu13 for 11.x. On a Jetson TensorRT comes with the JetPack release.
    """
    if is_jetson():
        return f"the JetPack release that ships TensorRT {version} (python3-libnvinfer)"
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return f"TensorRT {version}"
    if major < 10:
        return f"`pip install tensorrt=={version}`"
    flavour = installed_tensorrt_flavour() or ("cu13" if major >= 11 else "cu12")
    return f"`pip install tensorrt-{flavour}=={version}`"


def tegra_release_path() -> Path:
    return Path(os.environ.get(TEGRA_RELEASE_ENV, "/etc/nv_tegra_release"))


def is_jetson() -> bool:
    """True on an NVIDIA Jetson (L4T writes /etc/nv_tegra_release; there is no nvidia-smi)."""
    return tegra_release_path().is_file()


def device_tree_model() -> Optional[str]:
    """The board's device-tree model on a Jetson ("NVIDIA Jetson Orin Nano Developer Kit"), else None."""
    if not is_jetson():
        return None
    path = Path(os.environ.get(DEVICE_TREE_MODEL_ENV, "/proc/device-tree/model"))
    try:
        return path.read_bytes().decode(errors="replace").rstrip("\x00").strip() or None
    except OSError:
        return None


def gpu_identity(device_id: int = 0) -> GpuInfo:
    """Name, compute capability, SM count, memory and board of CUDA device ``device_id``:
    pycuda, else cuda-python (a build machine may have only that). The name is the driver's."""
    try:
        return _pycuda_identity(device_id)._replace(device_model=device_tree_model())
    except BackendError as exc:
        pycuda_error = str(exc)
    try:
        return _cuda_python_identity(device_id)._replace(device_model=device_tree_model())
    except ImportError:
        pass
    raise BackendError(f"cannot identify the GPU: {pycuda_error}; install pycuda or cuda-python")


def _check_device(cuda: Any, device_id: int) -> None:
    if not 0 <= device_id < cuda.Device.count():
        raise BackendError(f"CUDA device {device_id} does not exist; found {cuda.Device.count()} device(s)")


def _pycuda_identity(device_id: int) -> GpuInfo:
    cuda = import_pycuda_driver()
    _check_device(cuda, device_id)
    device = cuda.Device(device_id)
    sms = device.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)
    return GpuInfo(
        str(device.name()),
        format_compute_capability(tuple(device.compute_capability())),
        int(sms),
        int(device.total_memory()) >> 20,
    )


def import_cudart() -> Any:
    """cuda-python's runtime module; ImportError when cuda-python is not installed."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python; ImportError when neither is installed
    return cudart


def _cuda_python_identity(device_id: int) -> GpuInfo:
    cudart = import_cudart()
    err, props = cudart.cudaGetDeviceProperties(device_id)
    if int(err) != 0:
        raise BackendError(f"CUDA device {device_id} is not usable: cudaGetDeviceProperties returned {err}")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(
        name.rstrip("\x00").strip(),
        format_compute_capability((int(props.major), int(props.minor))),
        int(props.multiProcessorCount),
        int(props.totalGlobalMem) >> 20,
    )


@contextmanager
def primary_context(device_id: int) -> Iterator[Any]:
    """Make device ``device_id``'s primary context current for the block (pycuda); yields pycuda.driver.

    The primary context is the one the CUDA runtime inside TensorRT uses, so a builder or
    runtime created in the block works on that device. On exit the stack is as before.
    """
    cuda = import_pycuda_driver()
    _check_device(cuda, device_id)
    ctx = cuda.Device(device_id).retain_primary_context()
    ctx.push()
    try:
        yield cuda
    finally:
        cuda.Context.pop()
        release_primary_context(ctx)


def release_primary_context(ctx: Any) -> None:
    """Drop our reference to a primary context without leaving it current on this thread.

    pycuda's ``detach()`` pushes a context that is not current and then calls
    cuDevicePrimaryCtxRelease, which, unlike cuCtxDestroy, "does not pop the context from the
    stack in any circumstances" (CUDA driver API); pycuda's "pop is implicit in detach" holds
    only for contexts it created. So: detach, then pop it again at the driver level.
    """
    handle = int(ctx.handle)
    ctx.detach()
    try:
        driver = libcuda()
    except OSError:  # no driver library to call: nothing more can be done
        return
    current = ctypes.c_void_p()
    if driver.cuCtxGetCurrent(ctypes.byref(current)) == 0 and (current.value or 0) == handle:
        driver.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))


class ContextOwner:
    """The thread that owns device ``device_id``'s primary context and every CUDA object in it.

    pycuda records the thread that created a context: ``detach()`` from another thread
    silently skips the release (the context leaks), and streams, events, page-locked buffers
    and modules freed from another thread while the context is not current there warn
    ("cannot activate out-of-thread context") and leak. A Detector is often made in one thread
    and closed in another (the pipeline does), so the context is retained, and everything that
    must be created or destroyed in it runs, in one small dedicated thread: :meth:`call` hands
    work to it and waits. Work that only needs the context current (copies, kernel launches,
    inference) runs in the caller's thread inside :meth:`activate`. After :meth:`close` no
    context is current in the owner thread and the primary context is released.
    """

    def __init__(self, device_id: int = 0) -> None:
        self._cuda = import_pycuda_driver()
        _check_device(self._cuda, device_id)
        self._jobs: "queue.Queue[Optional[Callable[[], None]]]" = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=f"rd-edge-cuda{device_id}", daemon=True)
        self._closed = False
        self._thread.start()
        try:
            self._ctx: Any = self._run(self._cuda.Device(device_id).retain_primary_context, push=False)
        except BaseException:
            self._closed = True
            self._jobs.put(None)  # no context: the thread has nothing to own
            raise

    @property
    def cuda(self) -> Any:
        """pycuda.driver."""
        return self._cuda

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()

    def _run(self, fn: Callable[[], T], push: bool) -> T:
        """``fn()`` in the owner thread (with the context pushed when ``push``); its result or exception."""
        work = (lambda: self._pushed(fn)) if push else fn
        if threading.current_thread() is self._thread:
            return work()
        done = threading.Event()
        box: Dict[str, Any] = {}

        def job() -> None:
            try:
                box["value"] = work()
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc
            finally:
                done.set()

        self._jobs.put(job)
        done.wait()
        if "error" in box:
            raise box.pop("error")
        return box.pop("value")

    def _pushed(self, fn: Callable[[], T]) -> T:
        self._ctx.push()
        try:
            return fn()
        finally:
            self._cuda.Context.pop()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in the owner thread with the context current: for creating and freeing
        CUDA objects (streams, events, buffers, TensorRT engines). BackendError once closed."""
        if self._closed:
            raise BackendError("the CUDA context is released; this runner is closed")
        return self._run(fn, push=True)

    @contextmanager
    def activate(self) -> Iterator[None]:
        """Make the context current for the calling thread (any thread) during the block."""
        if self._closed:
            raise BackendError("the CUDA context is released; this runner is closed")
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def close(self, release: Optional[Callable[[], None]] = None) -> None:
        """Run ``release`` (free the objects of this context) in the owner thread with the
        context current, then release the primary context there and end the thread.
        Idempotent, from any thread."""
        if self._closed:
            return
        try:
            if release is not None:
                self._run(release, push=True)
        finally:
            self._closed = True
            try:
                self._run(lambda: release_primary_context(self._ctx), push=False)
            finally:
                self._jobs.put(None)
                if threading.current_thread() is not self._thread:
                    self._thread.join()


_libcuda: Optional[Any] = None


def libcuda() -> Any:
    """The CUDA driver library (for the two context calls pycuda does not expose)."""
    global _libcuda
    if _libcuda is None:
        _libcuda = ctypes.CDLL("libcuda.so.1")
    return _libcuda


def device_index(device: Optional[str], device_id: Optional[int]) -> int:
    """CUDA device index from ``device_id`` or a "cuda"/"cuda:N" device string."""
    if device == "cpu":
        raise BackendError(
            "a TensorRT engine runs on the GPU; use device='cuda' (or 'cuda:N'), or run "
            "the ONNX model on the CPU with backend='ort'"
        )
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
