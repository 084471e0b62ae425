"""Make an exported ONNX graph clean for every runtime, check it, and attach the metadata."""

from __future__ import annotations

from collections import Counter
from typing import Dict

import onnx

from rd_edge.core.errors import ExportError
from rd_edge.core.metadata import METADATA_KEY, ModelMetadata
from rd_edge.core.onnx_props import metadata_from_entries

# Operators that are training-only or that one of our targets does not load.
FORBIDDEN_OPS = {"BatchNormalization", "Identity", "Dropout", "ReduceSum", "ReduceMax", "Max", "Min"}


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: folds constants and removes Identity/Constant plumbing (measured in the report)."""
    import onnxslim

    return onnxslim.slim(model)


def op_histogram(model: onnx.ModelProto) -> Dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Strict shape inference; every intermediate tensor must end up with a shape."""
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    known = {v.name for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    unknown = [o for n in inferred.graph.node for o in n.output if o and o not in known]
    if unknown:
        raise ExportError(f"shape inference left {len(unknown)} tensors without a shape, e.g. {unknown[:5]}")
    return inferred


def check_clean(model: onnx.ModelProto) -> None:
    """No forbidden operator may remain (BatchNorm must be folded, no stray Identity...)."""
    found = sorted({n.op_type for n in model.graph.node} & FORBIDDEN_OPS)
    if found:
        raise ExportError(f"the exported graph still contains {found}; these break TensorRT or OpenCV DNN")


def set_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Exactly one metadata_props entry 'rd_edge' holding the JSON."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=metadata.to_json())


def read_metadata(model: onnx.ModelProto, source: str = "model") -> ModelMetadata:
    """The validated rd_edge metadata of an in-memory model (same rules as the file reader)."""
    return metadata_from_entries([(p.key, p.value) for p in model.metadata_props], source)


def full_check(model: onnx.ModelProto) -> None:
    """onnx.checker with full_check (runs shape inference inside the checker too)."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejected the graph: {exc}") from exc
