"""The TensorRT runner: a deserialized plan, its execution context and reused buffers (pycuda).

Name-based I/O (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``), which exists from TensorRT 8.5 (JetPack 5.1) through 10.x and later.
Page-locked host buffers, device buffers and one non-blocking CUDA stream are allocated once
for the engine's maximum batch and reused by every call. An engine built with a fixed batch N
(``rd-export --batch N``) runs every call at N: a smaller batch is padded to N and the outputs
sliced back, because TensorRT refuses ``set_input_shape`` with any other value for a fixed
dimension (as the C++ backend does).

The loader (loader.py) has checked the sidecar against this machine before the runner starts.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Tuple, TypeVar

import numpy as np

from rd_edge.core.errors import BackendError, MetadataError
from rd_edge.core.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from rd_edge.core.sidecar import REBUILD_HINT, EngineSidecar

from ..base import DeviceInputRunner
from .util import CU_STREAM_NON_BLOCKING, ContextOwner, import_tensorrt

T = TypeVar("T")


class TensorRTRunner(DeviceInputRunner):
    """A deserialized plan with its execution context, stream and reused buffers."""

    name = "trt"

    def __init__(self, path: Path, sidecar: EngineSidecar, device_id: int = 0) -> None:
        self.path, self.sidecar, self.metadata = path, sidecar, sidecar.metadata
        self._trt = import_tensorrt()
        self._closed = False
        self._host: Dict[str, np.ndarray] = {}
        self._device_mem: Dict[str, Any] = {}
        # The primary context is the one the CUDA runtime (inside TensorRT) uses, so pycuda and
        # TensorRT share memory and streams without a second context. Its owner thread creates
        # and frees every CUDA and TensorRT object, whichever thread loads or closes the runner.
        self._owner = ContextOwner(device_id)
        self._cuda = self._owner.cuda
        try:
            self._owner.call(self._load)
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        trt = self._trt
        self._logger = trt.Logger(trt.Logger.WARNING)  # kept: the runtime holds a reference to it
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise BackendError(
                f"TensorRT could not deserialize {self.path} (see its log above); the "
                f"plan is corrupt or from another build; rebuild it: {REBUILD_HINT}"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(
                f"TensorRT could not create an execution context for {self.path} (out of GPU memory?)"
            )
        self.input_names, self._all_outputs = _io_names(trt, self._engine, self.path)
        self.output_names = tuple(OUTPUT_NAMES)
        self._input_shape = _check_input_shape(self._engine, self.path, self.metadata)  # (3,H,W)
        self._profile_max, self._static_batch = _max_batch(self._engine)
        self.max_batch = self._profile_max
        # Non-blocking: never serialized behind work other libraries put on the legacy stream.
        self.stream = self._cuda.Stream(flags=CU_STREAM_NON_BLOCKING)
        self._allocate()

    def _allocate(self) -> None:
        """Host (page-locked) and device buffers for every I/O tensor at the maximum batch."""
        self._set_batch(self._profile_max)
        for name in self.input_names + self._all_outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(
                    f"{self.path}: tensor {name!r} has unresolved shape {shape} at batch "
                    f"{self.max_batch}; data-dependent output shapes are not supported"
                )
            dtype = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))
            self._host[name] = self._cuda.pagelocked_empty(int(np.prod(shape)), dtype)  # flat
            self._device_mem[name] = self._cuda.mem_alloc(max(self._host[name].nbytes, 1))
            if not self._context.set_tensor_address(name, int(self._device_mem[name])):
                raise BackendError(f"TensorRT refused the device address of tensor {name!r} for {self.path}")

    @contextmanager
    def activate(self) -> Iterator[None]:
        """Make this runner's CUDA context current for the calling thread."""
        if self._closed:
            raise BackendError(f"the TensorRT runner for {self.path} is closed")
        with self._owner.activate():
            yield

    def call_in_context_owner(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in the thread that owns the CUDA context, with it current: for freeing
        CUDA objects (e.g. a preprocessor's buffers) from any thread."""
        if self._closed:
            raise BackendError(f"the TensorRT runner for {self.path} is closed")
        return self._owner.call(fn)

    @property
    def input_dtype(self) -> np.dtype:
        return self._host[INPUT_NAME].dtype

    def device_input_pointer(self) -> int:
        """Device address of the [max_batch,3,H,W] input buffer (CUDA preprocessing writes here)."""
        return int(self._device_mem[INPUT_NAME])

    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """``{"image": [N,3,H,W]}`` -> ``{"anomaly_map": [N,1,H,W], "score": [N]}``."""
        image = feed[INPUT_NAME]
        n = int(image.shape[0])
        with self.activate():
            staging = self._host[INPUT_NAME][: image.size]
            staging.reshape(image.shape)[...] = image  # casts to the engine's input dtype
            self._cuda.memcpy_htod_async(self._device_mem[INPUT_NAME], staging, self.stream)
            return self._execute(n)

    def infer_from_device_impl(self, batch: int) -> Dict[str, np.ndarray]:
        """Run on the first ``batch`` images already written at device_input_pointer()."""
        with self.activate():
            return self._execute(batch)

    def _set_batch(self, n: int) -> None:
        if not self._context.set_input_shape(INPUT_NAME, (n,) + self._input_shape):
            raise BackendError(f"TensorRT refused input shape {(n,) + self._input_shape} for {self.path}")

    def _execute(self, n: int) -> Dict[str, np.ndarray]:
        """Enqueue inference and the output copies on the stream, wait, return copies of the first n.

        A fixed-batch engine always runs its N images (the slots past ``n`` hold whatever was
        there; images are independent, so they do not affect the first ``n``).
        """
        run = self._profile_max if self._static_batch else n
        self._set_batch(run)
        if not self._context.execute_async_v3(self.stream.handle):
            raise BackendError(f"TensorRT execution failed for {self.path} (see its log above)")
        views = {}
        for name in self.output_names:
            shape = tuple(self._context.get_tensor_shape(name))
            view = self._host[name][: int(np.prod(shape))]
            self._cuda.memcpy_dtoh_async(view, self._device_mem[name], self.stream)
            views[name] = view.reshape(shape)
        self.stream.synchronize()
        # Copies: the page-locked buffers are overwritten by the next call.
        return {name: np.array(view[:n], dtype=np.float32) for name, view in views.items()}

    def close(self) -> None:
        """Free device memory and TensorRT objects and release the primary context, in the
        context's owner thread whichever thread calls this. Idempotent."""
        if self._closed:
            return
        self._closed = True
        owner = getattr(self, "_owner", None)
        if owner is not None:
            owner.close(self._free)

    def _free(self) -> None:
        """In the owner thread, context current: buffers, stream, then TensorRT objects."""
        for mem in self._device_mem.values():
            mem.free()
        self._device_mem, self._host = {}, {}
        # context before engine before runtime
        self._context = self._engine = self._runtime = self.stream = None


def _io_names(trt: Any, engine: Any, path: Path) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(inputs, outputs) by name; the contract is one input ``image`` and both outputs."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    outputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    missing = [n for n in OUTPUT_NAMES if n not in outputs]
    if inputs != (INPUT_NAME,) or missing:
        raise MetadataError(
            f"{path}: engine I/O is inputs {list(inputs)}, outputs {list(outputs)}; "
            f"expected input {INPUT_NAME!r} and outputs {list(OUTPUT_NAMES)}. "
            f"Rebuild it from an rd-export ONNX: {REBUILD_HINT}"
        )
    return inputs, outputs


def _check_input_shape(engine: Any, path: Path, meta: ModelMetadata) -> Tuple[int, int, int]:
    """The engine's (3, H, W), checked against the metadata's image size."""
    shape = tuple(engine.get_tensor_shape(INPUT_NAME))
    expected = (3, meta.height, meta.width)
    if len(shape) != 4 or shape[1:] != expected:
        raise MetadataError(
            f"{path}: engine input shape {shape} does not match the metadata's "
            f"[N, {', '.join(map(str, expected))}]; rebuild it: {REBUILD_HINT}"
        )
    return expected


def _max_batch(engine: Any) -> Tuple[int, bool]:
    """(largest batch the engine accepts, fixed?): a static N, else optimization profile 0's max."""
    static = int(engine.get_tensor_shape(INPUT_NAME)[0])
    if static > 0:
        return static, True
    if hasattr(engine, "get_tensor_profile_shape"):  # TensorRT >= 8.5
        min_opt_max = engine.get_tensor_profile_shape(INPUT_NAME, 0)
    else:
        min_opt_max = engine.get_profile_shape(0, INPUT_NAME)
    return int(min_opt_max[2][0]), False
