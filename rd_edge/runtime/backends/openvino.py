"""OpenVINO backend: an IR (``model.xml`` + ``.bin``) or an rd-export ONNX on the CPU.

The inference precision is always set, never left to the plugin: OpenVINO's CPU plugin runs
float layers in bf16 by default on CPUs that have it (AVX-512 BF16, AMX), which changes the
scores without saying so. Here ``fp32`` means f32, and ``bf16`` is used only when asked (or when
the IR was exported for it) and the CPU has it. An int8 IR (NNCF) runs its quantized layers in
int8 whatever the hint; the hint sets the precision of the rest (the anomaly-map head, layers
kept float): fp32, or bf16 where rd-export's scope search measured it within the fidelity bound
and the CPU has it.

openvino is imported inside the loader (``pip install '.[openvino]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rd_edge.core.choices import BackendName, InferencePrecision, Precision, values
from rd_edge.core.errors import BackendError, MetadataError
from rd_edge.core.ir_props import INT8_FLOAT_PRECISION_KEY, ir_weights_path, read_ir_metadata
from rd_edge.core.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from rd_edge.core.onnx_props import read_onnx_metadata
from rd_edge.core.optional import lazy_import

from .base import Runner, register_backend, reject_unknown_options

ov = lazy_import("openvino", "the OpenVINO backend", "`pip install '.[openvino]'`")

_OPTIONS = ("precision", "threads", "device")
# Our precision names -> OpenVINO's element types for INFERENCE_PRECISION_HINT.
_OV_TYPES = {InferencePrecision.FP32.value: "f32", InferencePrecision.BF16.value: "bf16"}
_CAPABILITY = {InferencePrecision.FP32.value: "FP32", InferencePrecision.BF16.value: "BF16"}


def _probe() -> Optional[str]:
    return ov.why_missing()


def default_inference_precision(meta: ModelMetadata, capabilities: Sequence[str]) -> str:
    """What a model runs in unless told otherwise: bf16 for an IR exported for bf16; for an int8
    IR, what rd-export's scope search chose for its float layers (``inference_precision`` in its
    metadata: bf16 only where ``capabilities``, OpenVINO's OPTIMIZATION_CAPABILITIES of the CPU,
    has BF16, else fp32, which is only more faithful);
    else fp32. An int8 IR's quantized layers are int8 whatever this is."""
    if meta.precision == InferencePrecision.BF16.value:
        return InferencePrecision.BF16.value
    chosen_bf16 = meta.extra.get(INT8_FLOAT_PRECISION_KEY) == InferencePrecision.BF16.value
    if meta.precision == Precision.INT8.value and chosen_bf16 and "BF16" in capabilities:
        return InferencePrecision.BF16.value
    return InferencePrecision.FP32.value


def cpu_capabilities() -> List[str]:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of this CPU (e.g. FP32, BF16, INT8)."""
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _check_precision(precision: str, capabilities: List[str]) -> str:
    if precision not in _OV_TYPES:
        raise BackendError(
            f"OpenVINO inference precision {precision!r}: expected one of "
            f"{', '.join(values(InferencePrecision))}"
        )
    if _CAPABILITY[precision] not in capabilities:
        raise BackendError(
            f"OpenVINO inference precision {precision}: this CPU lacks it (OpenVINO "
            f"reports {', '.join(capabilities)}); load with precision='fp32' "
            f"(rd-infer --precision fp32)"
        )
    return precision


def _read_metadata(path: Path) -> ModelMetadata:
    if path.suffix.lower() == ".onnx":
        return read_onnx_metadata(path)
    if not ir_weights_path(path).is_file():
        raise BackendError(
            f"{path}: its weights {ir_weights_path(path).name} are missing; an OpenVINO IR is "
            f"two files, copy both (rd-export --format openvino writes them side by side)"
        )
    return read_ir_metadata(path)


@register_backend(BackendName.OPENVINO.value, suffixes=(".xml",), probe=_probe, aliases=("ov",))
def load_openvino(
    path: Path,
    precision: Optional[str] = None,
    threads: Optional[int] = None,
    device: Optional[str] = None,
    **unknown: Any,
) -> "OpenVinoRunner":
    """Compile ``path`` (IR .xml or rd-export .onnx) for the CPU.

    ``precision``: inference precision of float layers, "fp32" or "bf16" (default: the
    model's, see :func:`default_inference_precision`). ``threads``: inference threads
    (default: OpenVINO's, one per core). ``device``: "cpu" only.
    """
    reject_unknown_options(BackendName.OPENVINO.value, unknown, _OPTIONS)
    if device is not None and device.lower() != "cpu":
        raise BackendError(
            f"the OpenVINO backend runs on the CPU; device {device!r} is not supported here "
            f"(use backend 'ort' or 'trt' for CUDA)"
        )
    if threads is not None and int(threads) < 1:
        raise BackendError(f"threads must be >= 1, got {threads}")
    meta = _read_metadata(path)
    module = ov.load()
    core = module.Core()
    capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    chosen = _check_precision(precision or default_inference_precision(meta, capabilities), capabilities)
    config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": _OV_TYPES[chosen], "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as exc:  # openvino raises RuntimeError subclasses of its own
        raise BackendError(f"OpenVINO cannot load {path}: {exc}".strip()) from exc
    return OpenVinoRunner(compiled, path, meta, chosen)


class OpenVinoRunner(Runner):
    """A compiled model with one infer request: input ``image``, outputs ``anomaly_map``, ``score``."""

    name = "openvino"
    concurrent = False  # one InferRequest: the Detector serializes calls

    def __init__(self, compiled: Any, path: Path, meta: ModelMetadata, precision: str) -> None:
        self.compiled = compiled
        self.path = path
        self.metadata = meta
        self.precision = precision  # inference precision of float layers, as set
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        self.input_names, self.max_batch = _check_input(compiled, path, meta)
        self.output_names = _check_outputs(compiled, path)
        self.request = compiled.create_infer_request()

    def describe(self) -> str:
        """For headers: device, inference precision and threads."""
        return f"CPU, {self.precision} inference, {self.threads} threads"

    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.request is None:
            raise BackendError(f"the OpenVINO runner for {self.path} is closed")
        image = np.ascontiguousarray(feed[INPUT_NAME], dtype=np.float32)
        try:
            results = self.request.infer({INPUT_NAME: image})
        except Exception as exc:
            raise BackendError(f"OpenVINO failed on input {image.shape} ({self.path}): {exc}") from exc
        by_name = {port.get_any_name(): value for port, value in results.items()}
        # copies: the request reuses its output tensors on the next call
        return {name: np.array(by_name[name]) for name in self.output_names}

    def close(self) -> None:
        self.request = None
        self.compiled = None


def _check_input(compiled: Any, path: Path, meta: ModelMetadata) -> Tuple[Tuple[str, ...], Optional[int]]:
    """Validate the single input ``image`` [N,3,H,W] against the metadata's image size."""
    names = [port.get_any_name() for port in compiled.inputs]
    if names != [INPUT_NAME]:
        raise MetadataError(
            f"{path}: expected one input named {INPUT_NAME!r}, found {names}; "
            f"re-export the model with rd-export"
        )
    shape = compiled.inputs[0].get_partial_shape()
    dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []
    expected = [None, 3, meta.height, meta.width]
    if len(dims) != 4 or any(d is not None and e is not None and d != e for d, e in zip(dims, expected)):
        raise MetadataError(
            f"{path}: input {INPUT_NAME!r} has shape {shape}, but the metadata says "
            f"[N, 3, {meta.height}, {meta.width}]; re-export it with rd-export"
        )
    return (INPUT_NAME,), dims[0]


def _check_outputs(compiled: Any, path: Path) -> Tuple[str, ...]:
    names = [name for port in compiled.outputs for name in port.get_names()]
    missing = [n for n in OUTPUT_NAMES if n not in names]
    if missing:
        raise MetadataError(
            f"{path}: outputs {names} lack {missing}; expected {list(OUTPUT_NAMES)}, "
            f"re-export the model with rd-export"
        )
    return tuple(OUTPUT_NAMES)
