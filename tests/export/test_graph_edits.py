"""Graph edits of the exporter: fp16 round trips dropped (only those), metadata set once (issue 28)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _graph(first_to):
    """x -> Cast(first_to) -> Cast(float) -> Add 0.25 -> y."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["x"], ["c"], to=first_to),
        helper.make_node("Cast", ["c"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["f", "q"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [numpy_helper.from_array(np.array([0.25], np.float32), "q")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "first_to,dropped,want",
    [
        (
            onnx.TensorProto.FLOAT16,
            1,
            [1.75, -2.25, 3.5, 0.25],
        ),  # the fp16 round trip goes: exact float32 values
        (
            onnx.TensorProto.INT32,
            0,
            [1.25, -1.75, 3.25, 0.25],
        ),  # a float -> int -> float Cast truncates: kept
    ],
)
def test_only_float16_round_trips_are_dropped(first_to, dropped, want):
    from rd_export.half import drop_float16_round_trips

    model = _graph(first_to)
    assert drop_float16_round_trips(model) == dropped
    x = np.array([1.5, -2.5, 3.25, 0.0], np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.array(want, np.float32))


def test_setting_the_metadata_again_keeps_exactly_one_entry_and_the_other_props():
    """rd-export rewrites a graph's metadata (int8 of an fp32 ONNX, fp16...): one 'rd_edge' entry,
    the newest, and foreign entries kept (a second entry is refused by every reader)."""
    from onnx import helper

    from rd_edge.core.metadata import ModelMetadata
    from rd_export.graph import read_metadata, set_metadata

    model = helper.make_model(helper.make_graph([], "g", [], []))
    helper.set_model_props(model, {"author": "line 3"})
    for threshold in (0.5, 0.7):
        set_metadata(
            model,
            ModelMetadata(
                backbone="resnet18",
                image_size=[64, 64],
                threshold=threshold,
                score_stats=None,
                checkpoint_sha256="0" * 64,
                exporter_version="t",
            ),
        )
    assert [p.key for p in model.metadata_props] == ["author", "rd_edge"]
    assert read_metadata(model).threshold == 0.7
