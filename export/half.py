"""An fp16 graph from an fp32 rd-export graph, without the checkpoint (for TensorRT 11).

TensorRT 11 builds strongly typed networks only: an fp16 engine needs a graph whose weights and
compute are float16 already. From a checkpoint, rd-export traces the half-precision module
(``onnx_export.HalfPrecisionRD``); from an ONNX file (a Jetson, a Triton container) this module
converts the fused graph with ONNX Runtime's ``convert_float_to_float16``, keeping the same
parts float32 as the traced export: the input normalization and the anomaly-map head (``/head/``),
whose cosine sums lose too much in fp16. The converter rounds every tensor between two float32
nodes through float16 (a Cast pair); those pairs are removed again, so the head computes in
float32 end to end, as in the traced graph.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import numpy as np
import onnx

from rd_edge.core.errors import ExportError
from rd_edge.core.files import PathLike
from rd_edge.core.metadata import ModelMetadata

from .graph import full_check, read_metadata, set_metadata
from .verify import TOLERANCE, check_images, run_onnxruntime

FLOAT16_PART = "/rd/"  # teacher, OCBE and student: everything else stays float32
_FLOAT, _FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def _cast_to(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "to"), -1) if node.op_type == "Cast" else -1


def drop_float16_round_trips(model: onnx.ModelProto) -> int:
    """Remove Cast(fp32->fp16) -> Cast(fp16->fp32) pairs: consumers read the float32 tensor.

    Returns the number of pairs removed. A pair in front of a graph output hands the output's
    name to the float32 tensor; the float16 Cast is dropped once nothing reads it.
    """
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    replaced: Dict[str, str] = {}  # output of a Cast(->fp32) -> the float32 tensor before the pair
    renamed: Dict[str, str] = {}  # a float32 tensor -> the graph output it now is
    for node in graph.node:
        first = producer.get(node.input[0]) if _cast_to(node) == _FLOAT else None
        if first is None or _cast_to(first) != _FLOAT16:
            continue
        if node.output[0] in outputs:  # the float32 tensor itself becomes the graph output
            renamed[first.input[0]] = node.output[0]
            node.output[0] = f"{node.output[0]}_unused"
        else:
            replaced[node.output[0]] = first.input[0]
    for node in graph.node:
        sources = [replaced.get(n, n) for n in node.input]
        node.input[:] = [renamed.get(n, n) for n in sources]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    before = len(graph.node)
    while True:  # a dropped Cast(->fp32) may leave its Cast(->fp16) unread: repeat until stable
        read = {name for n in graph.node for name in n.input} | outputs
        keep: List[onnx.NodeProto] = [n for n in graph.node if n.op_type != "Cast" or n.output[0] in read]
        if len(keep) == len(graph.node):
            return (before - len(keep)) // 2
        del graph.node[:]
        graph.node.extend(keep)


def fp16_graph(fp32_onnx: PathLike, out: PathLike, n_check: int = 4) -> Path:
    """Write the fp16 graph of ``fp32_onnx`` to ``out`` (metadata precision fp16); returns ``out``.

    Checked like a traced fp16 export: ONNX Runtime on both graphs, map and score within
    ``verify.TOLERANCE["fp16"]``; ExportError beyond it (``out`` is then not written).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    source, out = Path(fp32_onnx), Path(out)
    model = onnx.load(str(source))
    meta = read_metadata(model, str(source))
    if meta.precision != "fp32":
        raise ExportError(
            f"{source} is a {meta.precision} graph; the fp16 conversion starts from the fp32 one"
        )
    block = [n.name for n in model.graph.node if not n.name.startswith(FLOAT16_PART)]
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=block)
    drop_float16_round_trips(half)
    OnnxModel(half).topological_sort()  # the converter appends its Casts after their readers
    set_metadata(half, replace(meta, precision="fp16"))
    full_check(half)
    tmp = out.with_name(f".{out.name}.tmp")
    onnx.save(half, str(tmp))
    try:
        _check_parity(source, tmp, meta, n_check)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _check_parity(fp32: Path, fp16: Path, meta: ModelMetadata, n: int) -> None:
    images, _ = check_images(meta, None, n=n)  # random images at the model's size
    (map32, score32), (map16, score16) = run_onnxruntime(fp32, images), run_onnxruntime(fp16, images)
    d_map, d_score = float(np.abs(map32 - map16).max()), float(np.abs(score32 - score16).max())
    tol = TOLERANCE["fp16"]
    if not (d_map <= tol and d_score <= tol):
        raise ExportError(
            f"the fp16 graph of {fp32} differs from it by {d_map:.2e} (map) and {d_score:.2e} "
            f"(score), beyond the fp16 tolerance {tol:g}; export fp16 from the checkpoint "
            f"(`rd-export model.pt --precision fp16`)"
        )
