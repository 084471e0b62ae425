"""Fixtures for the runtime tests: a tiny stand-in for the exported RD graph.

The stand-in honours the model contract (input ``image`` float32 [N,3,H,W] RGB in [0,1],
outputs ``anomaly_map`` [N,1,H,W] and ``score`` [N] = max of the map, ``rd_edge`` metadata)
with a map that depends on every pixel and channel: a weighted channel sum of |x - 0.5|,
with unequal weights so a BGR/RGB swap changes the result.
"""

from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import cv2
import numpy as np
import pytest

from rd_edge.core.metadata import METADATA_KEY, ModelMetadata

TINY_SIZE = (24, 32)  # (H, W): not square, so an H/W swap shows
CHANNEL_WEIGHTS = np.array([0.5, 0.3, 0.2], np.float32)  # R, G, B


def tiny_metadata(
    image_size: Sequence[int] = TINY_SIZE,
    threshold: Optional[float] = 0.3,
    score_stats: Optional[dict] = None,
) -> ModelMetadata:
    stats = (
        {"min": 0.1, "max": 0.3, "mean": 0.2, "std": 0.05, "count": 20}
        if score_stats is None
        else score_stats
    )
    return ModelMetadata(
        backbone="tiny",
        image_size=list(image_size),
        threshold=threshold,
        score_stats=stats,
        checkpoint_sha256="0" * 64,
        exporter_version="test",
    )


def build_tiny_model(
    path: Path,
    metadata: Union[ModelMetadata, str, None] = "default",
    graph_size: Sequence[int] = TINY_SIZE,
    batch: Union[int, str] = "N",
    input_name: str = "image",
) -> Path:
    """Write the stand-in ONNX graph; ``metadata=None`` leaves the rd_edge property out."""
    onnx = pytest.importorskip("onnx")  # a runtime-only install (Jetson) has no onnx: those tests skip
    from onnx import TensorProto, helper, numpy_helper

    h, w = graph_size
    image = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, h, w])
    amap = helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [batch, 1, h, w])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, [batch])
    inits = [
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(CHANNEL_WEIGHTS.reshape(1, 3, 1, 1), "weights"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Sub", [input_name, "half"], ["centred"]),
        helper.make_node("Abs", ["centred"], ["distance"]),
        helper.make_node("Conv", ["distance", "weights"], ["anomaly_map"]),  # [N,1,H,W]
        helper.make_node("GlobalMaxPool", ["anomaly_map"], ["pooled"]),  # [N,1,1,1]
        helper.make_node("Reshape", ["pooled", "flat"], ["score"]),  # [N]
    ]
    graph = helper.make_graph(nodes, "tiny_rd", [image], [amap, score], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata == "default":
        metadata = tiny_metadata(graph_size)
    if metadata is not None:
        text = metadata if isinstance(metadata, str) else metadata.to_json()
        helper.set_model_props(model, {METADATA_KEY: text})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reference_outputs(path: Path, frames: Sequence[np.ndarray]) -> dict:
    """Direct ONNX Runtime call with CPU preprocessing written out by hand, by the model's resize
    rule: area averaging for a frame that shrinks in both axes under "area-shrink/linear-enlarge",
    bilinear otherwise."""
    import onnxruntime as ort

    from rd_edge.core.onnx_props import read_onnx_metadata

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    h, w = session.get_inputs()[0].shape[2:]
    area_rule = read_onnx_metadata(path).resize == "area-shrink/linear-enlarge"
    batch = []
    for frame in frames:
        shrinks = frame.shape[0] >= h and frame.shape[1] >= w
        resized = cv2.resize(
            frame, (w, h), interpolation=cv2.INTER_AREA if area_rule and shrinks else cv2.INTER_LINEAR
        )
        rgb = resized[:, :, ::-1].astype(np.float32) / np.float32(255.0)
        batch.append(rgb.transpose(2, 0, 1))
    amap, score = session.run(["anomaly_map", "score"], {"image": np.stack(batch)})
    return {"anomaly_map": amap, "score": score}


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., Path]:
    """make_model(name="model.onnx", **build_tiny_model options) -> path."""

    def make(name: str = "model.onnx", **kwargs) -> Path:
        return build_tiny_model(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def tiny_onnx(make_model) -> Path:
    return make_model()


@pytest.fixture
def metadata_factory() -> Callable[..., ModelMetadata]:
    """tiny_metadata(image_size=..., threshold=..., score_stats=...) -> ModelMetadata."""
    return tiny_metadata


@pytest.fixture
def reference() -> Callable[[Path, Sequence[np.ndarray]], dict]:
    """reference(model_path, frames) -> direct ONNX Runtime outputs, preprocessed by hand."""
    return reference_outputs
