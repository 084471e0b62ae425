"""ONNX -> TensorRT plan plus JSON sidecar, with the TensorRT Python API of 8.5 through 10.x and 11.

Torch-free and onnx-free: a Jetson builds its own engine from the ONNX (``rd-build-engine``),
and ``rd-export --engine`` calls the same function. tensorrt, pycuda and cuda-python are imported
on first use; their absence is an ExportError naming what to install. The sidecar format and its
validation are the contract's (:mod:`rd_edge.core.sidecar`); this module only fills it in.

Version differences handled here:

- EXPLICIT_BATCH network flag: required before 10, deprecated and ignored in 10, gone in 11.
- STRONGLY_TYPED: never set (10: weakly typed with flags; 11: always strongly typed, the flag
  deprecated and ignored).
- Workspace: ``set_memory_pool_limit`` (8.4+) else ``max_workspace_size``.
- Precision: 8.5..10 have FP16/INT8 builder flags (INT8 is required for Q/DQ graphs in weakly
  typed networks; int8 engines also get FP16 for the layers outside the Q/DQ scope). 11 removes
  them: precision comes from the ONNX (fp16 weights, Q/DQ int8) in a strongly typed network.
  The anomaly-map head is pinned to float32 whenever FP16 is on.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

from rd_edge.core.choices import Precision, values
from rd_edge.core.errors import BackendError, ExportError
from rd_edge.core.files import PathLike, sha256_file, write_bytes_atomic
from rd_edge.core.metadata import INPUT_NAME, ModelMetadata
from rd_edge.core.onnx_props import read_onnx_metadata
from rd_edge.core.sidecar import EngineSidecar, GpuInfo, format_compute_capability, sidecar_path

from . import util

ENGINE_PRECISIONS = tuple(values(Precision))
DEFAULT_MAX_BATCH = 8
HEAD_PREFIX = "/head/"  # the anomaly-map reduction: kept float32 in fp16 engines
INSTALL_HINT = (
    f"{util.GPU_EXTRAS} on a machine with an NVIDIA GPU, or JetPack (python3-libnvinfer) on a Jetson"
)


@dataclass
class EngineReport:
    """What build_engine wrote."""

    plan: Path
    sidecar: Path
    onnx_path: Path
    precision: str
    tensorrt_version: str
    gpu: str
    min_batch: int
    max_batch: int
    seconds: float
    timing_cache: Optional[str] = None  # what happened to the timing cache, for the report
    opt_batch: Optional[int] = None

    def format(self) -> str:
        batch = f"batch {self.min_batch}..{self.max_batch}" + (
            f" tuned for {self.opt_batch}" if self.min_batch < self.max_batch else " (fixed)"
        )
        lines = [
            f"wrote {self.plan} ({self.precision}, {batch}, "
            f"TensorRT {self.tensorrt_version}, {self.gpu}) from {self.onnx_path} in "
            f"{self.seconds:.1f} s; sidecar {self.sidecar.name}"
        ]
        if self.timing_cache:
            lines.append(self.timing_cache)
        return "\n".join(lines)


# --- what this machine builds with -----------------------------------------------------------


def import_tensorrt() -> Any:
    """The tensorrt module, or ExportError naming the package to install."""
    return util.trt.load(error=ExportError, needed_for="building a TensorRT engine")


def gpu_identity(device_id: int = 0) -> GpuInfo:
    """The GPU the engine is built on (name, capability, SMs, memory, board); ExportError when unknown."""
    try:
        return util.gpu_identity(device_id)
    except BackendError as exc:
        raise ExportError(f"cannot identify the GPU for the engine sidecar: {exc} ({INSTALL_HINT})") from exc


@contextmanager
def on_device(device_id: int) -> Iterator[None]:
    """Build on CUDA device ``device_id``: TensorRT's builder works on the thread's current
    context, so the device's primary context is made current (pycuda) or selected (cuda-python)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(util.primary_context(device_id))
        except BackendError as exc:
            _select_with_cuda_python(device_id, str(exc), stack)
        yield


def _select_with_cuda_python(device_id: int, pycuda_error: str, stack: ExitStack) -> None:
    try:
        cudart = util.import_cudart()
    except ImportError:
        if device_id == 0:  # the CUDA runtime's default device: nothing to select
            return
        raise ExportError(
            f"building on CUDA device {device_id} needs pycuda or cuda-python ({pycuda_error})"
        ) from None
    err, previous = cudart.cudaGetDevice()
    if int(cudart.cudaSetDevice(device_id)[0]) != 0:
        raise ExportError(f"cannot select CUDA device {device_id} for the build")
    if int(err) == 0:
        stack.callback(cudart.cudaSetDevice, previous)


def tensorrt_major(trt: Any) -> int:
    """Major version of the tensorrt module ("10.3.0" -> 10); ExportError when unparsable."""
    try:
        return util.tensorrt_major(trt)
    except BackendError as exc:
        raise ExportError(str(exc)) from None


# --- the ONNX side ------------------------------------------------------------------------------


def resolve_precision(requested: Optional[str], meta: ModelMetadata, source: PathLike, trt_major: int) -> str:
    """The engine precision for an ONNX graph of precision ``meta.precision``; ExportError when
    the pair cannot work (e.g. an fp32 engine from a Q/DQ graph)."""
    have = meta.precision
    want = requested or have
    if want not in ENGINE_PRECISIONS:
        raise ExportError(f"--precision {want!r}: expected one of {', '.join(ENGINE_PRECISIONS)}")
    if have == "int8":
        target = meta.extra.get("int8_target")
        if target != "tensorrt":
            raise ExportError(
                f"{source} was quantized for --int8-target {target}; TensorRT needs symmetric "
                f"int8 activations: re-quantize the fp32 ONNX with --int8-target tensorrt"
            )
        if want != "int8":
            raise ExportError(
                f"{source} is an int8 Q/DQ graph and builds only an int8 engine; pass "
                f"--precision int8, or build {want} from the fp32 ONNX"
            )
    elif want == "int8":
        raise ExportError(
            f"--precision int8 needs a Q/DQ graph, {source} is {have}; pass --calib-dir "
            f"DIR (good images) so rd-export quantizes it first"
        )
    elif have == "fp16" and want == "fp32":
        raise ExportError(
            f"{source} is an fp16 graph; an fp32 engine needs the fp32 ONNX "
            f"(`rd-export model.pt -o model.onnx`)"
        )
    elif have == "fp32" and want == "fp16" and trt_major >= 11:
        raise ExportError(
            f"TensorRT {trt_major} takes fp16 from the ONNX itself and {source} is fp32; "
            f"export an fp16 graph (`rd-export model.pt --precision fp16 -o model_fp16.onnx`) "
            f"or give the checkpoint: `rd-export model.pt --engine --precision fp16`; TensorRT 10 "
            f"(`pip install '.[gpu-cu12]'`) still builds fp16 from an fp32 graph"
        )
    return want


# --- the build ----------------------------------------------------------------------------------


def _make_logger(trt: Any, verbose: bool) -> Any:
    """A TensorRT logger that prints warnings (or everything) and keeps errors for the exception."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: List[str] = []
            self.threshold = int(trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.WARNING)

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            if int(severity) <= self.threshold:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return _Logger()


def _network_flags(trt: Any, major: int) -> int:
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if major < 10 and hasattr(creation, "EXPLICIT_BATCH"):
        flags |= 1 << int(creation.EXPLICIT_BATCH)  # required before 10, deprecated in 10
    # STRONGLY_TYPED is never set: 10 builds weakly typed networks with the FP16/INT8 flags, and
    # in 11 every network is strongly typed (the flag is deprecated and ignored there).
    return flags


def _parse(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    """Parse the ONNX into ``network``; ExportError listing every parser error."""
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx_path)):
        return
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node_name = err.node_name() if hasattr(err, "node_name") else ""
        where = f"node {err.node()}" + (f" {node_name!r}" if node_name else "")
        errors.append(f"{where}: {err.desc()}")
    errors = errors or logger.errors or ["(no parser message)"]
    raise ExportError(f"TensorRT {trt.__version__} could not parse {onnx_path}: {'; '.join(errors)}")


@dataclass(frozen=True)
class BatchProfile:
    """The engine's batch sizes: optimization profile 0 (min, opt, max), or a fixed batch."""

    min: int
    opt: int
    max: int
    dynamic: bool


def typical_batch(meta: ModelMetadata, max_batch: int) -> int:
    """The batch a model usually runs, capped at ``max_batch``: the tile count of the frame it
    was trained for (tiled models run a frame's tiles as one batch), ``max_batch`` for a
    tiled model of any frame size (its tiles run in chunks of max-batch), else 1 (one camera
    frame at a time)."""
    tiling = meta.tile_spec()
    if tiling is None:
        return 1
    if tiling.frame is None:
        return max_batch
    return max(1, min(max_batch, len(tiling.grid(tiling.frame))))


def _batch_range(
    network: Any, meta: ModelMetadata, max_batch: int, opt_batch: Optional[int], onnx_path: Path
) -> BatchProfile:
    """The batch profile of the ``image`` input, checked against the metadata."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    image = next((t for t in inputs if t.name == INPUT_NAME), None)
    if image is None or len(inputs) != 1:
        raise ExportError(
            f"{onnx_path}: inputs {[t.name for t in inputs]}; expected one input "
            f"{INPUT_NAME!r} (an rd-export graph)"
        )
    shape = tuple(image.shape)
    if len(shape) != 4 or shape[1:] != (3, meta.height, meta.width):
        raise ExportError(
            f"{onnx_path}: input shape {shape} does not match the metadata's "
            f"[N, 3, {meta.height}, {meta.width}]; re-export the model"
        )
    if shape[0] > 0:  # exported with a fixed --batch
        if max_batch not in (shape[0], DEFAULT_MAX_BATCH):
            raise ExportError(
                f"{onnx_path} has a fixed batch of {shape[0]}, --max-batch {max_batch} "
                f"cannot apply; re-export with --batch dynamic"
            )
        return BatchProfile(shape[0], shape[0], shape[0], False)
    opt = typical_batch(meta, max_batch) if opt_batch is None else opt_batch
    if not 1 <= opt <= max_batch:
        raise ExportError(
            f"--opt-batch {opt} is outside the engine's batch range 1..{max_batch}; "
            f"pass a value in it, or raise --max-batch"
        )
    return BatchProfile(1, opt, max_batch, True)


def _configure(trt: Any, builder: Any, network: Any, precision: str, workspace_mb: Optional[int]) -> Any:
    config = builder.create_builder_config()
    if workspace_mb is not None:
        if hasattr(config, "set_memory_pool_limit"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        else:  # before 8.4
            config.max_workspace_size = int(workspace_mb) << 20
    if hasattr(trt.BuilderFlag, "TF32"):
        # fp32 engines must match ONNX Runtime within 1e-3, and the head's cosine sums stay
        # full float32 in every engine.
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision in ("fp16", "int8") and hasattr(trt.BuilderFlag, "FP16"):
        # int8 engines too: the convolutions outside the Q/DQ scope (the teacher, by default)
        # then run fp16 rather than fp32, so an int8 engine is never slower than the fp16 one.
        config.set_flag(trt.BuilderFlag.FP16)
        _keep_head_float32(trt, network, config)
    if precision == "int8" and hasattr(trt.BuilderFlag, "INT8") and _has_qdq(trt, network):
        config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ layers need it in weakly typed networks (< 11)
    return config


def _has_qdq(trt: Any, network: Any) -> bool:
    kinds = {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def _keep_head_float32(trt: Any, network: Any, config: Any) -> None:
    """Pin the anomaly-map head to float32 under the FP16 flag (cosines near 1 lose in fp16)."""
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if HEAD_PREFIX not in layer.name:
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or any(o.dtype not in (trt.float32, trt.float16) for o in outputs):
            continue  # shape/index layers: no float precision to pin
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
    flag = getattr(trt.BuilderFlag, "PREFER_PRECISION_CONSTRAINTS", None) or getattr(
        trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None
    )
    if flag is not None:
        config.set_flag(flag)


def _load_timing_cache(config: Any, path: Path) -> str:
    """Attach the timing cache at ``path`` (a fresh one when missing or unusable); returns a note.

    ``create_timing_cache`` returns None for a blob it cannot read (another TensorRT version,
    a truncated file), and ``set_timing_cache`` returns False for a cache from another
    device: both fall back to a fresh cache, as Polygraphy's CreateConfig does.
    """
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data) if data else None
    if cache is not None and config.set_timing_cache(cache, False):
        return f"timing cache {path}: loaded {len(data)} bytes"
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        raise ExportError("TensorRT could not create an empty timing cache; build without --timing-cache")
    if not data:
        return ""
    why = (
        "unreadable (another TensorRT version, or a truncated file)"
        if cache is None
        else "from another GPU or TensorRT build"
    )
    return f"timing cache {path} is {why}; started a new one (it replaces the old file)"


def _save_timing_cache(config: Any, path: Path) -> int:
    """Write the config's timing cache atomically: an interrupted build leaves the old file whole."""
    data = bytes(memoryview(config.get_timing_cache().serialize()))
    write_bytes_atomic(path, data)
    return len(data)


def build_engine(
    onnx_path: PathLike,
    plan_path: PathLike,
    precision: Optional[str] = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    workspace_mb: Optional[int] = None,
    timing_cache: Optional[PathLike] = None,
    device_id: int = 0,
    verbose: bool = False,
    opt_batch: Optional[int] = None,
) -> EngineReport:
    """Build a TensorRT plan from an rd-export ONNX graph and write its sidecar next to it.

    ``precision`` None takes the graph's own (fp32, fp16 or int8 Q/DQ). ``opt_batch``: the
    batch TensorRT tunes its tactics for (default :func:`typical_batch`). ExportError when
    tensorrt is missing, the graph cannot give that precision, or TensorRT fails (with its
    messages); MetadataError when the ONNX has no rd_edge metadata.
    """
    t0 = time.perf_counter()
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    _check_sizes(max_batch, workspace_mb)
    meta = read_onnx_metadata(onnx_path)
    trt = import_tensorrt()
    major = tensorrt_major(trt)
    precision = resolve_precision(precision, meta, onnx_path, major)
    gpu = gpu_identity(device_id)
    with on_device(device_id):
        plan, batch, cache_note = _build(
            trt,
            major,
            onnx_path,
            plan_path,
            meta,
            precision,
            max_batch,
            opt_batch,
            workspace_mb,
            cache_path,
            verbose,
        )
    write_bytes_atomic(plan_path, plan)
    written = write_sidecar(plan_path, onnx_path, meta, precision, str(trt.__version__), gpu, batch)
    return EngineReport(
        plan_path,
        written,
        onnx_path,
        precision,
        str(trt.__version__),
        gpu.describe(),
        batch.min,
        batch.max,
        time.perf_counter() - t0,
        cache_note or None,
        batch.opt,
    )


def _add_profile(
    trt: Any,
    builder: Any,
    config: Any,
    batch: BatchProfile,
    chw: Tuple[int, int, int],
    logger: Any,
    onnx_path: Path,
) -> None:
    """Optimization profile 0 for the ``image`` input: batch min..max, tuned for opt."""
    profile = builder.create_optimization_profile()
    what = f"the optimization profile batch {batch.min}..{batch.max} (opt {batch.opt})"
    try:  # the binding raises for dimensions it refuses (min <= opt <= max per dimension)
        profile.set_shape(INPUT_NAME, (batch.min,) + chw, (batch.opt,) + chw, (batch.max,) + chw)
    except Exception as exc:  # pybind11 turns TensorRT's refusal into a RuntimeError/ValueError
        raise ExportError(f"TensorRT {trt.__version__} rejected {what} for {onnx_path}: {exc}") from exc
    if config.add_optimization_profile(profile) < 0:  # NvInfer.h: -1 when the profile is invalid
        raise ExportError(
            f"TensorRT {trt.__version__} rejected {what} for {onnx_path}: "
            f"{'; '.join(logger.errors[-3:]) or 'no message'}"
        )


def _build(
    trt: Any,
    major: int,
    onnx_path: Path,
    plan_path: Path,
    meta: ModelMetadata,
    precision: str,
    max_batch: int,
    opt_batch: Optional[int],
    workspace_mb: Optional[int],
    cache_path: Optional[Path],
    verbose: bool,
) -> Tuple[bytes, BatchProfile, str]:
    """Parse, configure and build on the current device: (plan bytes, batch profile, cache note)."""
    logger = _make_logger(trt, verbose)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, major))
    _parse(trt, network, logger, onnx_path)
    batch = _batch_range(network, meta, max_batch, opt_batch, onnx_path)
    config = _configure(trt, builder, network, precision, workspace_mb)
    if batch.dynamic:
        _add_profile(trt, builder, config, batch, (3, meta.height, meta.width), logger, onnx_path)
    cache_note = _load_timing_cache(config, cache_path) if cache_path is not None else ""

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        detail = "; ".join(logger.errors[-5:]) or "no error message (run with --verbose)"
        raise ExportError(
            f"TensorRT {trt.__version__} failed to build {plan_path.name} from {onnx_path} "
            f"({precision}): {detail}"
        )
    if cache_path is not None:
        size = _save_timing_cache(config, cache_path)
        cache_note = "; ".join(filter(None, [cache_note, f"saved timing cache {cache_path} ({size} bytes)"]))
    return bytes(memoryview(plan)), batch, cache_note


def default_plan_path(model: PathLike, precision: str, source_precision: str) -> Path:
    """``<stem>.engine`` beside ``model``, or ``<stem>_<precision>.engine`` when the engine's
    precision differs from the graph's (model.onnx -> model_fp16.engine)."""
    model = Path(model)
    suffix = "" if precision == source_precision else f"_{precision}"
    return model.with_name(f"{model.stem}{suffix}.engine")


def _check_sizes(max_batch: int, workspace_mb: Optional[int]) -> None:
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ExportError(f"--max-batch must be a positive integer, got {max_batch!r}")
    if workspace_mb is not None and (not isinstance(workspace_mb, int) or workspace_mb < 1):
        raise ExportError(f"--workspace must be a positive number of MiB, got {workspace_mb!r}")


def write_sidecar(
    plan_path: PathLike,
    onnx_path: PathLike,
    meta: ModelMetadata,
    precision: str,
    tensorrt_version: str,
    gpu: GpuInfo,
    batch: BatchProfile,
) -> Path:
    """Write the runtime's sidecar ``<plan>.json``: what the runtime checks before loading."""
    sidecar = EngineSidecar(
        tensorrt_version,
        gpu.name,
        format_compute_capability(gpu.compute_capability),
        precision,
        batch.min,
        batch.max,
        sha256_file(onnx_path),
        replace(meta, precision=precision),
        gpu.sm_count,
        gpu.total_memory_mb,
        gpu.device_model,
        opt_batch=batch.opt,
        dynamic_batch=batch.dynamic,
    )
    return sidecar.write(plan_path)


__all__ = [
    "ENGINE_PRECISIONS",
    "BatchProfile",
    "EngineReport",
    "build_engine",
    "default_plan_path",
    "gpu_identity",
    "import_tensorrt",
    "read_onnx_metadata",
    "resolve_precision",
    "sidecar_path",
    "typical_batch",
    "write_sidecar",
]
