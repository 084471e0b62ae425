"""Native TensorRT backend: a serialized plan plus its JSON sidecar, run through pycuda.

Name-based I/O (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``), which exists from TensorRT 8.5 (JetPack 5.1) through 10.x and later.
Page-locked host buffers, device buffers and one CUDA stream are allocated once for the
engine's maximum batch and reused by every call.

The sidecar ``<plan>.json`` (e.g. ``model.engine.json``) records what the plan was built with;
a plan from another TensorRT version or GPU is refused before TensorRT sees it. Reading and
checking the sidecar needs neither tensorrt nor a GPU. tensorrt and pycuda are imported only
inside the functions that need them.
"""
from __future__ import annotations

import importlib.util
import json
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from ...errors import BackendError, MetadataError
from ...metadata import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, ModelMetadata
from .base import DeviceInputRunner, PathLike, import_optional, register_backend, reject_unknown_options

REBUILD_HINT = "rd-export model.onnx --engine model.engine"
_SIDECAR_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability", "precision",
                   "min_batch", "max_batch", "onnx_sha256", METADATA_KEY)


# --- sidecar: readable and checkable without tensorrt or a GPU ------------------------------


def sidecar_path(plan: PathLike) -> Path:
    """The sidecar of ``plan``: the plan's file name plus ``.json`` (model.engine.json)."""
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


def format_compute_capability(value: Any) -> str:
    """"8.7" from "8.7", (8, 7) or [8, 7]; MetadataError for anything else."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}.{value[1]}"
    if isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value):
        return value
    raise MetadataError(f"compute_capability must be 'major.minor' or [major, minor], found {value!r}")


@dataclass
class EngineSidecar:
    """What a TensorRT plan was built with, and the model's ``rd_edge`` metadata."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor"
    precision: str  # fp32 | fp16 | int8
    min_batch: int
    max_batch: int
    onnx_sha256: str
    metadata: ModelMetadata

    def to_dict(self) -> Dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "metadata"}
        data[METADATA_KEY] = asdict(self.metadata)
        return data

    def write(self, plan: PathLike) -> Path:
        """Write ``<plan>.json``; returns its path. The engine builder calls this."""
        path = sidecar_path(plan)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "EngineSidecar":
        """Validate the sidecar fields; ``source`` names the file in errors."""
        if not isinstance(data, dict):
            raise MetadataError(f"{source}: expected a JSON object, found {type(data).__name__}")
        missing = [k for k in _SIDECAR_FIELDS if k not in data]
        if missing:
            raise MetadataError(f"{source}: sidecar lacks {missing}; rebuild the engine: {REBUILD_HINT}")
        batches = (data["min_batch"], data["max_batch"])
        if not all(isinstance(b, int) and b >= 1 for b in batches) or batches[0] > batches[1]:
            raise MetadataError(f"{source}: min_batch/max_batch must be integers with "
                                f"1 <= min <= max, found {list(batches)}")
        try:
            cc = format_compute_capability(data["compute_capability"])
        except MetadataError as exc:
            raise MetadataError(f"{source}: {exc}") from None
        meta = ModelMetadata.from_json(json.dumps(data[METADATA_KEY]), source=source)
        return cls(str(data["tensorrt_version"]), str(data["gpu_name"]), cc, str(data["precision"]),
                   data["min_batch"], data["max_batch"], str(data["onnx_sha256"]), meta)

    @classmethod
    def read(cls, plan: PathLike) -> "EngineSidecar":
        """Read and validate the sidecar of ``plan``; MetadataError when missing or invalid."""
        path = sidecar_path(plan)
        if not path.is_file():
            raise MetadataError(f"{plan} has no sidecar {path.name} (it carries the TensorRT version, "
                                f"GPU and rd_edge metadata); build the engine with rd-export, which "
                                f"writes both: {REBUILD_HINT}")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(f"cannot read engine sidecar {path}: {exc}") from exc
        return cls.from_dict(data, source=str(path))


def check_compatible(sidecar: EngineSidecar, plan: PathLike, tensorrt_version: str,
                     gpu_name: str, compute_capability: str) -> None:
    """BackendError unless the plan was built by this TensorRT version for this GPU.

    TensorRT plans are specific to the TensorRT version and GPU model that built them.
    """
    found = []
    if sidecar.tensorrt_version != tensorrt_version:
        found.append(f"TensorRT {sidecar.tensorrt_version} (running {tensorrt_version})")
    if sidecar.gpu_name != gpu_name or sidecar.compute_capability != compute_capability:
        found.append(f"GPU {sidecar.gpu_name} compute {sidecar.compute_capability} "
                     f"(running {gpu_name} compute {compute_capability})")
    if found:
        raise BackendError(f"{plan} was built for {' and '.join(found)}; a TensorRT plan only runs "
                           f"with the TensorRT version and GPU that built it. Rebuild it on this "
                           f"machine from the ONNX model: {REBUILD_HINT}")


# --- what this machine runs (tests monkeypatch these two) -----------------------------------


def _import_tensorrt() -> Any:
    return import_optional("tensorrt", "the TensorRT backend",
                           "on a Jetson it comes with JetPack (python3-libnvinfer), elsewhere "
                           "`pip install rd-edge[gpu]`")


def import_pycuda_driver() -> Any:
    """pycuda.driver, initialised; BackendError naming the extra when missing."""
    cuda = import_optional("pycuda.driver", "the TensorRT backend and CUDA preprocessing",
                           "`pip install rd-edge[gpu]`, or `pip install rd-edge[jetson]` on a Jetson")
    try:
        cuda.init()
    except Exception as exc:  # pycuda raises its own RuntimeError/LogicError subclasses
        raise BackendError(f"CUDA is not usable here (no NVIDIA GPU or driver?): {exc}") from exc
    return cuda


def tensorrt_version() -> str:
    """The running TensorRT version string, e.g. "10.3.0"."""
    return str(_import_tensorrt().__version__)


def gpu_identity(device_id: int = 0) -> Tuple[str, str]:
    """(name, "major.minor" compute capability) of CUDA device ``device_id``."""
    cuda = import_pycuda_driver()
    if not 0 <= device_id < cuda.Device.count():
        raise BackendError(f"CUDA device {device_id} does not exist; found {cuda.Device.count()} device(s)")
    device = cuda.Device(device_id)
    return str(device.name()), format_compute_capability(tuple(device.compute_capability()))


def _probe() -> Optional[str]:
    for module, extra in (("tensorrt", "JetPack or `pip install rd-edge[gpu]`"),
                          ("pycuda", "`pip install rd-edge[gpu]` or `rd-edge[jetson]`")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: {extra}"
    try:
        cuda = import_pycuda_driver()
        if cuda.Device.count() == 0:
            return "no CUDA device found"
    except BackendError as exc:
        return str(exc)
    return None


# --- the loader and runner ------------------------------------------------------------------


def _device_index(device: Optional[str], device_id: Optional[int]) -> int:
    """CUDA device index from ``device_id`` or a "cuda"/"cuda:N" device string."""
    if device == "cpu":
        raise BackendError("a TensorRT engine runs on the GPU; use device='cuda' (or 'cuda:N'), or run "
                           "the ONNX model on the CPU with backend='ort'")
    if device not in (None, "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise BackendError(f"device {device!r}: expected 'cuda' or 'cuda:N'")
    if device_id is not None:
        return int(device_id)
    return int(device[5:]) if device and device.startswith("cuda:") else 0


@register_backend("trt", suffixes=(".engine", ".plan"), probe=_probe, aliases=("tensorrt",))
def load_tensorrt(path: Path, device: Optional[str] = None, device_id: Optional[int] = None,
                  **unknown: Any) -> "TensorRTRunner":
    """Check the sidecar against this machine, then deserialize the plan on ``device_id``."""
    reject_unknown_options("trt", unknown, ("device", "device_id"))
    index = _device_index(device, device_id)
    sidecar = EngineSidecar.read(path)
    check_compatible(sidecar, path, tensorrt_version(), *gpu_identity(index))
    return TensorRTRunner(path, sidecar, index)


class TensorRTRunner(DeviceInputRunner):
    """A deserialized plan with its execution context, stream and reused buffers."""

    name = "trt"

    def __init__(self, path: Path, sidecar: EngineSidecar, device_id: int = 0) -> None:
        self.path, self.sidecar, self.metadata = path, sidecar, sidecar.metadata
        self._cuda = import_pycuda_driver()
        self._trt = _import_tensorrt()
        self._closed = False
        self._host: Dict[str, np.ndarray] = {}
        self._device_mem: Dict[str, Any] = {}
        # The primary context is the one the CUDA runtime (inside TensorRT) uses, so pycuda and
        # TensorRT share memory and streams without a second context.
        self._ctx = self._cuda.Device(device_id).retain_primary_context()
        try:
            with self.activate():
                self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        trt = self._trt
        self._logger = trt.Logger(trt.Logger.WARNING)  # kept: the runtime holds a reference to it
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise BackendError(f"TensorRT could not deserialize {self.path} (see its log above); the "
                               f"plan is corrupt or from another build; rebuild it: {REBUILD_HINT}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"TensorRT could not create an execution context for {self.path} "
                               f"(out of GPU memory?)")
        self.input_names, self._all_outputs = _io_names(trt, self._engine, self.path)
        self.output_names = tuple(OUTPUT_NAMES)
        self._input_shape = _check_input_shape(self._engine, self.path, self.metadata)  # (3,H,W)
        self.max_batch = _max_batch(self._engine)
        self.stream = self._cuda.Stream()
        self._allocate()

    def _allocate(self) -> None:
        """Host (page-locked) and device buffers for every I/O tensor at the maximum batch."""
        self._set_batch(self.max_batch)
        for name in self.input_names + self._all_outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(f"{self.path}: tensor {name!r} has unresolved shape {shape} at batch "
                                   f"{self.max_batch}; data-dependent output shapes are not supported")
            dtype = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))
            self._host[name] = self._cuda.pagelocked_empty(int(np.prod(shape)), dtype)  # flat
            self._device_mem[name] = self._cuda.mem_alloc(max(self._host[name].nbytes, 1))
            self._context.set_tensor_address(name, int(self._device_mem[name]))

    @contextmanager
    def activate(self) -> Iterator[None]:
        """Make this runner's CUDA context current for the calling thread."""
        if self._closed:
            raise BackendError(f"the TensorRT runner for {self.path} is closed")
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    @property
    def input_dtype(self) -> np.dtype:
        return self._host[INPUT_NAME].dtype

    def device_input_pointer(self) -> int:
        """Device address of the [max_batch,3,H,W] input buffer (CUDA preprocessing writes here)."""
        return int(self._device_mem[INPUT_NAME])

    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """``{"image": [N,3,H,W]}`` -> ``{"anomaly_map": [N,1,H,W], "score": [N]}``."""
        image = feed[INPUT_NAME]
        n = self._check_batch(image.shape)
        with self.activate():
            staging = self._host[INPUT_NAME][: image.size]
            staging.reshape(image.shape)[...] = image  # casts to the engine's input dtype
            self._cuda.memcpy_htod_async(self._device_mem[INPUT_NAME], staging, self.stream)
            return self._execute(n)

    def infer_from_device(self, batch: int) -> Dict[str, np.ndarray]:
        """Run on the first ``batch`` images already written at device_input_pointer()."""
        self._check_batch((batch,) + self._input_shape)
        with self.activate():
            return self._execute(batch)

    def _check_batch(self, shape: Tuple[int, ...]) -> int:
        if tuple(shape[1:]) != self._input_shape or not 1 <= shape[0] <= self.max_batch:
            raise BackendError(f"{self.path}: input shape {tuple(shape)} does not fit the engine: "
                               f"expected [1..{self.max_batch}, {', '.join(map(str, self._input_shape))}]")
        return int(shape[0])

    def _set_batch(self, n: int) -> None:
        if not self._context.set_input_shape(INPUT_NAME, (n,) + self._input_shape):
            raise BackendError(f"TensorRT refused input shape {(n,) + self._input_shape} for {self.path}")

    def _execute(self, n: int) -> Dict[str, np.ndarray]:
        """Enqueue inference and the output copies on the stream, wait, return copies."""
        self._set_batch(n)
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
        return {name: np.array(view, dtype=np.float32) for name, view in views.items()}

    def close(self) -> None:
        """Free device memory and TensorRT objects, release the primary context. Idempotent."""
        if self._closed:
            return
        self._closed = True
        ctx = getattr(self, "_ctx", None)
        if ctx is None:
            return
        ctx.push()
        try:
            for mem in self._device_mem.values():
                mem.free()
            self._device_mem, self._host = {}, {}
            # Drop TensorRT objects while the context is current: context before engine before runtime.
            self._context = self._engine = self._runtime = self.stream = None
        finally:
            self._cuda.Context.pop()
            ctx.detach()


def _io_names(trt: Any, engine: Any, path: Path) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(inputs, outputs) by name; the contract is one input ``image`` and both outputs."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    outputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    missing = [n for n in OUTPUT_NAMES if n not in outputs]
    if inputs != (INPUT_NAME,) or missing:
        raise MetadataError(f"{path}: engine I/O is inputs {list(inputs)}, outputs {list(outputs)}; "
                            f"expected input {INPUT_NAME!r} and outputs {list(OUTPUT_NAMES)}. "
                            f"Rebuild it from an rd-export ONNX: {REBUILD_HINT}")
    return inputs, outputs


def _check_input_shape(engine: Any, path: Path, meta: ModelMetadata) -> Tuple[int, int, int]:
    """The engine's (3, H, W), checked against the metadata's image size."""
    shape = tuple(engine.get_tensor_shape(INPUT_NAME))
    expected = (3, meta.height, meta.width)
    if len(shape) != 4 or shape[1:] != expected:
        raise MetadataError(f"{path}: engine input shape {shape} does not match the metadata's "
                            f"[N, {', '.join(map(str, expected))}]; rebuild it: {REBUILD_HINT}")
    return expected


def _max_batch(engine: Any) -> int:
    """Largest batch the engine accepts: static N, else optimization profile 0's max."""
    static = int(engine.get_tensor_shape(INPUT_NAME)[0])
    if static > 0:
        return static
    if hasattr(engine, "get_tensor_profile_shape"):  # TensorRT >= 8.5
        min_opt_max = engine.get_tensor_profile_shape(INPUT_NAME, 0)
    else:
        min_opt_max = engine.get_profile_shape(0, INPUT_NAME)
    return int(min_opt_max[2][0])
