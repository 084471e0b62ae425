"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers.

onnxruntime is imported inside the loader; the metadata is read from the file by
:func:`rd_edge.core.onnx_props.read_onnx_metadata` (no ``onnx`` package needed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from rd_edge.core.errors import BackendError, MetadataError
from rd_edge.core.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from rd_edge.core.onnx_props import read_onnx_metadata
from rd_edge.core.optional import import_optional

from .base import Runner, register_backend, reject_unknown_options

# Shorthands accepted in ``providers``; full provider names pass through unchanged.
PROVIDER_SHORTHANDS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_TRT = "TensorrtExecutionProvider"
# ONNX Runtime type strings of the graph's tensors -> numpy dtypes the runner feeds.
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
_OPTIONS = ("providers", "device", "device_id", "fp16", "cache_dir", "threads", "spinning")
# ONNX Runtime's session config key: worker threads spin while waiting for work (its default on);
# on a CPU shared with other processes, spinning burns cycles those processes need.
_SPINNING_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def _import_onnxruntime() -> Any:
    """The onnxruntime module, or a BackendError naming the extra that installs it."""
    return import_optional(
        "onnxruntime",
        "the ONNX Runtime backend",
        "`pip install '.[cpu]'` (onnxruntime) or `pip install '.[gpu]'` (onnxruntime-gpu)",
    )


def _probe() -> Optional[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed: `pip install '.[cpu]'` or `pip install '.[gpu]'`"
    return None


def expand_providers(providers: Union[None, str, Sequence[str]], device: Optional[str] = None) -> List[str]:
    """Provider names from shorthands; the default follows ``device`` ("cpu" or "cuda[:N]").

    A GPU provider list gets CPUExecutionProvider appended, so nodes a GPU provider does not
    take still run (ORT's own fallback rule, made explicit).
    """
    if providers is None:
        providers = ["cuda"] if (device or "cpu").startswith("cuda") else ["cpu"]
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p.strip()]
    names = [PROVIDER_SHORTHANDS.get(p.strip().lower(), p.strip()) for p in providers]
    if not names:
        raise BackendError("providers is empty; expected e.g. ['cpu'], ['cuda'] or ['tensorrt', 'cuda']")
    if _CPU not in names:
        names.append(_CPU)
    return list(dict.fromkeys(names))  # de-duplicated, order kept


def _check_available(names: Sequence[str], available: Sequence[str]) -> None:
    missing = [n for n in names if n not in available]
    if missing:
        hint = (
            " (install onnxruntime-gpu: `pip install '.[gpu]'`)"
            if _CPU in available and any(n in (_CUDA, _TRT) for n in missing)
            else ""
        )
        raise BackendError(
            f"ONNX Runtime execution provider(s) {missing} are not available here; "
            f"available: {list(available)}{hint}"
        )


def _provider_options(
    names: Sequence[str], device_id: int, fp16: bool, cache_dir: Optional[Path]
) -> List[Dict[str, Any]]:
    """One options dict per provider, in the same order."""
    options: List[Dict[str, Any]] = []
    for name in names:
        opts: Dict[str, Any] = {}
        if name in (_CUDA, _TRT):
            opts["device_id"] = device_id
        if name == _TRT:
            opts["trt_fp16_enable"] = bool(fp16)
            if cache_dir is not None:
                # Building TensorRT engines takes minutes; cache them and the timing data.
                opts.update(
                    trt_engine_cache_enable=True,
                    trt_engine_cache_path=str(cache_dir),
                    trt_timing_cache_enable=True,
                    trt_timing_cache_path=str(cache_dir),
                )
        options.append(opts)
    return options


def _parse_device(device: Optional[str], device_id: Optional[int]) -> int:
    """Device index from ``device_id`` or a "cuda:N" device string (default 0)."""
    if device_id is not None:
        return int(device_id)
    if device and ":" in device:
        try:
            return int(device.split(":", 1)[1])
        except ValueError:
            raise BackendError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'") from None
    return 0


@register_backend("ort", suffixes=(".onnx",), probe=_probe, aliases=("onnxruntime",))
def load_onnxruntime(
    path: Path,
    providers: Union[None, str, Sequence[str]] = None,
    device: Optional[str] = None,
    device_id: Optional[int] = None,
    fp16: bool = False,
    cache_dir: Optional[Union[str, Path]] = None,
    threads: Optional[int] = None,
    spinning: Optional[bool] = None,
    **unknown: Any,
) -> "OnnxRuntimeRunner":
    """Open ``path`` in an InferenceSession with the requested providers.

    ``providers``: names or shorthands ("cpu", "cuda", "tensorrt"); default from ``device``.
    ``fp16`` and ``cache_dir`` configure the TensorRT provider and need it in ``providers``.
    ``threads``: intra-op threads (default: ONNX Runtime's, one per core). ``spinning``: False
    makes idle worker threads sleep instead of spin (ONNX Runtime's default: spin), which pays
    on a CPU shared with other work.
    """
    reject_unknown_options("ort", unknown, _OPTIONS)
    if device is not None and not (device == "cpu" or device.startswith("cuda")):
        raise BackendError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    ort = _import_onnxruntime()
    names = expand_providers(providers, device)
    _check_available(names, ort.get_available_providers())
    if (fp16 or cache_dir is not None) and _TRT not in names:
        raise BackendError(
            f"fp16 and cache_dir configure the TensorRT execution provider, which is "
            f"not among the providers {names}; add 'tensorrt' to providers (an fp16 "
            f"model for CPU/CUDA is exported with `rd-export --precision fp16`)"
        )
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        if int(threads) < 1:
            raise BackendError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = int(threads)
    if spinning is not None:
        for key in _SPINNING_KEYS:
            options.add_session_config_entry(key, "1" if spinning else "0")
    provider_options = _provider_options(names, _parse_device(device, device_id), fp16, cache)
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=names, provider_options=provider_options
        )
    except Exception as exc:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail...)
        raise BackendError(f"ONNX Runtime cannot load {path}: {exc}".strip()) from exc
    _check_session_providers(session, names)
    return OnnxRuntimeRunner(session, path)


def _check_session_providers(session: Any, requested: Sequence[str]) -> None:
    """ORT silently drops a provider whose libraries fail to load (e.g. no cuDNN); refuse that."""
    active = session.get_providers()
    dropped = [p for p in requested if p not in active]
    if dropped:
        raise BackendError(
            f"ONNX Runtime could not initialise {dropped} (active: {active}); see its "
            f"log above, usually a missing or mismatched CUDA/cuDNN/TensorRT library"
        )


class OnnxRuntimeRunner(Runner):
    """A validated InferenceSession: input ``image``, outputs ``anomaly_map`` and ``score``."""

    name = "ort"
    concurrent = True  # InferenceSession.run is thread-safe (ONNX Runtime's documented contract)

    def __init__(self, session: Any, path: Path) -> None:
        self.session = session
        self.path = path
        self.providers: List[str] = list(session.get_providers())
        self.metadata = read_onnx_metadata(path)  # the one reader: rd-export, rd-infer and builds agree
        self.input_names, self._input_dtype, self.max_batch = _check_input(session, path, self.metadata)
        self.output_names = _check_outputs(session, path)

    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """``{"image": [N,3,H,W]}`` -> ``{"anomaly_map": [N,1,H,W], "score": [N]}``."""
        if self.session is None:
            raise BackendError(f"the ONNX Runtime runner for {self.path} is closed")
        image = feed[INPUT_NAME]
        if image.dtype != self._input_dtype:  # e.g. a graph exported with fp16 inputs
            image = image.astype(self._input_dtype)
        try:
            outputs = self.session.run(list(self.output_names), {INPUT_NAME: image})
        except Exception as exc:
            raise BackendError(
                f"ONNX Runtime failed on input {image.shape} {image.dtype} ({self.path}): {exc}"
            ) from exc
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self.session = None


def _check_input(session: Any, path: Path, meta: ModelMetadata) -> Tuple[Tuple[str, ...], Any, Optional[int]]:
    """Validate the single input ``image`` [N,3,H,W] against the metadata's image size."""
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    if names != [INPUT_NAME]:
        raise MetadataError(
            f"{path}: expected one input named {INPUT_NAME!r}, found {names}; "
            f"re-export the model with rd-export"
        )
    shape = list(inputs[0].shape)
    expected = [None, 3, meta.height, meta.width]
    # Symbolic dims (str/None) pass; only a concrete disagreement is an error.
    bad = len(shape) != 4 or any(
        isinstance(s, int) and e is not None and s != e for s, e in zip(shape, expected)
    )
    if bad:
        raise MetadataError(
            f"{path}: input {INPUT_NAME!r} has shape {shape}, but the metadata says "
            f"[N, 3, {meta.height}, {meta.width}]; the model and its metadata "
            f"disagree, re-export it with rd-export"
        )
    dtype = _ORT_DTYPES.get(inputs[0].type)
    if dtype is None:
        raise MetadataError(f"{path}: input {INPUT_NAME!r} has type {inputs[0].type}, expected tensor(float)")
    max_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return (INPUT_NAME,), dtype, max_batch


def _check_outputs(session: Any, path: Path) -> Tuple[str, ...]:
    names = [o.name for o in session.get_outputs()]
    missing = [n for n in OUTPUT_NAMES if n not in names]
    if missing:
        raise MetadataError(
            f"{path}: outputs {names} lack {missing}; expected {list(OUTPUT_NAMES)}, "
            f"re-export the model with rd-export"
        )
    return tuple(OUTPUT_NAMES)
