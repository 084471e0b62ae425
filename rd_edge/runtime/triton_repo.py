"""Triton Inference Server model repositories: ``config.pbtxt`` text and the folder layout.

Pure text, no tritonclient and no protobuf needed to write them (the tests parse every config
with Triton's own ``ModelConfig`` message). Two kinds of model:

- the exported graph itself (``rd-export model.onnx --triton-repo DIR``): ``rd_<name>/1/model.onnx``
  for the ``onnxruntime`` backend or ``model.plan`` for ``tensorrt``; inputs and outputs are the
  graph's (``image`` float32 [N,3,H,W] RGB in [0,1] -> ``anomaly_map`` [N,1,H,W], ``score`` [N]),
  so clients preprocess (rd_edge.core.preprocess) themselves;
- the whole Detector behind the Python backend (``rd-serve``): model ``rd_edge``, encoded images
  (or raw BGR frames) in, scores and maps at the frame's size out.

Both carry the ``rd_edge`` metadata and the image and pixel thresholds as ``parameters``
(resolved as the Detector resolves them: arguments, ``thresholds.json`` beside the model, metadata).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from rd_edge.core.errors import MetadataError, RdEdgeError
from rd_edge.core.files import PathLike, leaves_folder, write_text_atomic
from rd_edge.core.metadata import INPUT_NAME, ModelMetadata
from rd_edge.core.thresholds import NoThresholdError

from .backends.trt.builder import DEFAULT_MAX_BATCH  # the engines' default: one default everywhere
from .threshold_precedence import ResolvedThresholds, resolve_thresholds

DETECTOR_MODEL_NAME = "rd_edge"
DEFAULT_QUEUE_DELAY_US = 2000  # how long the dynamic batcher waits to fill a batch

# Triton's file name and backend per graph kind; the dict keeps the writer free of if-chains.
GRAPH_BACKENDS: Dict[str, Dict[str, str]] = {
    "onnxruntime": {"file": "model.onnx", "kind": "KIND_AUTO"},  # GPU when the server has one
    "tensorrt": {"file": "model.plan", "kind": "KIND_GPU"},
}

_TRITON_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
    "bytes": "TYPE_STRING",
    "int32": "TYPE_INT32",
}


class TritonRepositoryError(RdEdgeError):
    """A Triton model repository cannot be written as asked."""


@dataclass
class TensorSpec:
    """One input or output of a Triton model; ``dims`` without the batch dimension."""

    name: str
    dtype: str  # numpy-style name, a key of _TRITON_TYPES
    dims: Sequence[int]
    reshape: Optional[Sequence[int]] = None  # the model's own shape when it differs from dims
    optional: bool = False

    def to_text(self) -> str:
        parts = [
            f'name: "{self.name}"',
            f"data_type: {_TRITON_TYPES[self.dtype]}",
            f"dims: [ {', '.join(str(d) for d in self.dims)} ]",
        ]
        if self.reshape is not None:
            parts.append(f"reshape: {{ shape: [ {', '.join(str(d) for d in self.reshape)} ] }}")
        if self.optional:
            parts.append("optional: true")
        return "  {\n    " + "\n    ".join(parts) + "\n  }"


def _quote(text: str) -> str:
    """A protobuf text-format string literal (C escapes; non-ASCII as UTF-8 octal escapes)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def model_config_text(
    name: str,
    backend: str,
    max_batch: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    instances: int,
    kind: str,
    parameters: Dict[str, str],
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
) -> str:
    """A ``config.pbtxt`` (Triton ModelConfig in protobuf text format).

    ``max_batch`` 0: the model does not batch (dims are full shapes, no dynamic batcher)."""
    if max_batch < 0 or instances < 1:
        raise TritonRepositoryError(
            f"max batch must be >= 0 and instance count >= 1, got {max_batch} and {instances}"
        )
    params = "\n".join(
        f"parameters {{\n  key: {_quote(k)}\n  value: {{ string_value: {_quote(v)} }}\n}}"
        for k, v in sorted(parameters.items())
    )
    # Triton refuses a dynamic batcher on a model with max_batch_size 0.
    batcher = (
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}" if max_batch else ""
    )
    return (
        "\n".join(
            filter(
                None,
                [
                    f'name: "{name}"',
                    f'backend: "{backend}"',
                    f"max_batch_size: {max_batch}",
                    "input [\n" + ",\n".join(t.to_text() for t in inputs) + "\n]",
                    "output [\n" + ",\n".join(t.to_text() for t in outputs) + "\n]",
                    batcher,
                    f"instance_group [\n  {{\n    kind: {kind}\n    count: {instances}\n  }}\n]",
                    params,
                ],
            )
        )
        + "\n"
    )


def metadata_parameters(meta: ModelMetadata, thresholds: Optional[ResolvedThresholds]) -> Dict[str, str]:
    """The ``parameters`` every rd-edge Triton model carries (Triton parameters are strings)."""
    params = {"rd_edge": meta.to_json()}
    if thresholds is not None:
        params.update(
            {
                "threshold": repr(thresholds.image_threshold),
                "pixel_threshold": repr(thresholds.pixel_threshold),
                "threshold_source": thresholds.image_source,
            }
        )
    return params


def graph_model_config(
    meta: ModelMetadata,
    name: str,
    backend: str,
    max_batch: int = DEFAULT_MAX_BATCH,
    instances: int = 1,
    thresholds: Optional[ResolvedThresholds] = None,
    fixed_batch: Optional[int] = None,
) -> str:
    """config.pbtxt of the exported graph on the onnxruntime or tensorrt backend.

    ``max_batch``: the largest batch the model runs (a TensorRT plan's profile max: Triton's
    TensorRT backend refuses a larger max_batch_size). ``fixed_batch`` N: a graph or plan whose
    batch is fixed at N (``rd-export --batch N``): ``max_batch_size: 0`` and full [N, ...] dims,
    since Triton's batching needs a variable first dimension.
    """
    spec = _graph_backend(backend)
    h, w = meta.height, meta.width
    dtype = str(meta.input.get("dtype", "float32"))
    if dtype not in _TRITON_TYPES:
        raise MetadataError(
            f"the model's input dtype {dtype!r} has no Triton type; expected one of {sorted(_TRITON_TYPES)}"
        )
    lead = [] if fixed_batch is None else [fixed_batch]  # batching models: Triton adds the N itself
    inputs = [TensorSpec(str(meta.input.get("name", INPUT_NAME)), dtype, lead + [3, h, w])]  # [N,3,H,W]
    outputs = [
        TensorSpec("anomaly_map", "float32", lead + [1, h, w]),  # [N,1,H,W]
        # The graph's score is [N]; a batching model needs at least one dim per item: [N,1]
        # on the wire, reshaped to the graph's [N]. A fixed batch has the full [N].
        TensorSpec("score", "float32", lead) if lead else TensorSpec("score", "float32", [1], reshape=[]),
    ]
    return model_config_text(
        name,
        backend,
        0 if lead else max_batch,
        inputs,
        outputs,
        instances,
        spec["kind"],
        metadata_parameters(meta, thresholds),
    )


def detector_model_config(
    meta: ModelMetadata,
    thresholds: ResolvedThresholds,
    model_path: str,
    max_batch: int = DEFAULT_MAX_BATCH,
    instances: int = 1,
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
    extra: Optional[Dict[str, str]] = None,
) -> str:
    """config.pbtxt of the Detector on the Python backend (model ``rd_edge``)."""
    inputs = [
        TensorSpec("IMAGE", "bytes", [1], optional=True),  # one encoded PNG/JPEG per item
        TensorSpec("FRAME", "uint8", [-1, -1, 3], optional=True),
    ]  # BGR [H,W,3] per item
    outputs = [
        TensorSpec("SCORE", "float32", [1]),
        TensorSpec("IS_ANOMALOUS", "bool", [1]),
        TensorSpec("NORMALIZED_SCORE", "float32", [1]),
        TensorSpec("ANOMALY_MAP", "float16", [-1, -1]),
    ]  # [H,W] at the frame's size
    params = metadata_parameters(meta, thresholds)
    params["model_file"] = model_path  # relative to the version folder: no host path in the config API
    params.update(extra or {})
    return model_config_text(
        DETECTOR_MODEL_NAME,
        "python",
        max_batch,
        inputs,
        outputs,
        instances,
        "KIND_CPU",
        params,
        queue_delay_us,
    )


def _graph_backend(backend: str) -> Dict[str, str]:
    try:
        return GRAPH_BACKENDS[backend]
    except KeyError:
        raise TritonRepositoryError(
            f"unknown Triton backend {backend!r}; expected one of {sorted(GRAPH_BACKENDS)}"
        ) from None


def repository_model_name(model: PathLike) -> str:
    """``rd_<stem>`` with characters Triton model names should not have replaced by '_'."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(model).stem)
    return stem if stem.startswith("rd_") else f"rd_{stem}"


def graph_thresholds(source: PathLike, meta: ModelMetadata) -> Optional[ResolvedThresholds]:
    """The thresholds a Detector would use for ``source``; None when the model has none at all
    (the graph still serves: clients bring their own threshold)."""
    try:
        return resolve_thresholds(source, meta)
    except NoThresholdError:  # a broken thresholds.json is another error, raised: no silent fallback
        return None


def write_graph_repository(
    model: PathLike,
    repo: PathLike,
    meta: ModelMetadata,
    backend: str,
    max_batch: int = DEFAULT_MAX_BATCH,
    instances: int = 1,
    name: Optional[str] = None,
    source: Optional[PathLike] = None,
    fixed_batch: Optional[int] = None,
) -> Path:
    """Copy ``model`` (an .onnx or a TensorRT plan) into ``repo/<name>/1/`` and write its config.

    ``source``: the file whose neighbouring ``thresholds.json`` applies (default: ``model``);
    the model name defaults to ``rd_<stem of source>``; ``max_batch`` and ``fixed_batch`` as
    in :func:`graph_model_config`. Returns the model's folder.
    """
    spec = _graph_backend(backend)
    source = Path(source if source is not None else model)
    name = name or repository_model_name(source)
    folder = Path(repo) / name
    version = folder / "1"
    text = graph_model_config(
        meta,
        name,
        backend,
        max_batch,
        instances,  # every check before writing
        thresholds=graph_thresholds(source, meta),
        fixed_batch=fixed_batch,
    )
    data = _external_data(Path(model)) if Path(model).suffix.lower() == ".onnx" else []
    try:
        version.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, version / spec["file"])
        for relative in data:  # the weights beside the graph, where the graph says they are
            (version / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(model).parent / relative, version / relative)
    except OSError as exc:
        raise TritonRepositoryError(f"cannot write the Triton model {folder}: {exc.strerror or exc}") from exc
    write_text_atomic(folder / "config.pbtxt", text)
    return folder


def _external_data(model: Path) -> List[str]:
    """The ONNX model's external data files (relative to its folder); TritonRepositoryError for one
    that is missing or would lie outside the model's folder."""
    from rd_edge.core.onnx_props import onnx_external_data

    try:
        locations = onnx_external_data(model)
    except (OSError, ValueError) as exc:
        raise TritonRepositoryError(f"cannot read {model} as an ONNX model: {exc}") from exc
    for location in locations:
        if leaves_folder(location):
            raise TritonRepositoryError(
                f"{model} keeps weights in {location!r}, outside its folder; "
                f"re-export it with its external data beside it"
            )
        if not (model.parent / location).is_file():
            raise TritonRepositoryError(f"{model} keeps weights in {location}, which is missing beside it")
    return locations


MODEL_LINK = "model_dir"


def write_detector_repository(
    repo: PathLike,
    meta: ModelMetadata,
    thresholds: ResolvedThresholds,
    model_path: str,
    model_py: str,
    max_batch: int = DEFAULT_MAX_BATCH,
    instances: int = 1,
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
    extra: Optional[Dict[str, str]] = None,
) -> Path:
    """``repo/rd_edge/{config.pbtxt, 1/model.py, 1/model_dir}`` for the Python backend; returns the
    model folder. ``1/model_dir`` links to the model's folder (with its sidecar or external data):
    the config, which any client may read, names the model only relative to the version folder."""
    folder = Path(repo) / DETECTOR_MODEL_NAME
    (folder / "1").mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "1" / "model.py", model_py)
    link = folder / "1" / MODEL_LINK
    if link.is_symlink():
        link.unlink()
    link.symlink_to(Path(model_path).resolve().parent, target_is_directory=True)
    write_text_atomic(
        folder / "config.pbtxt",
        detector_model_config(
            meta,
            thresholds,
            f"{MODEL_LINK}/{Path(model_path).name}",
            max_batch,
            instances,
            queue_delay_us,
            extra,
        ),
    )
    return folder


def parameter_values(config_parameters: Dict[str, Dict[str, str]]) -> Dict[str, str]:
    """{key: string_value} from the ``parameters`` of a model config as JSON (Python backend args)."""
    return {key: value.get("string_value", "") for key, value in config_parameters.items()}


__all__: List[str] = [
    "DETECTOR_MODEL_NAME",
    "GRAPH_BACKENDS",
    "TensorSpec",
    "TritonRepositoryError",
    "detector_model_config",
    "graph_model_config",
    "graph_thresholds",
    "model_config_text",
    "parameter_values",
    "repository_model_name",
    "write_detector_repository",
    "write_graph_repository",
]
