"""The rd_edge metadata of an .onnx file, read without the onnx package (the runtime has none)."""

import pytest

from rd_edge.core.errors import MetadataError
from rd_edge.core.metadata import METADATA_KEY, ModelMetadata
from rd_edge.core.onnx_props import onnx_metadata_entries, read_onnx_metadata

onnx = pytest.importorskip("onnx")  # only to write the test files


def write(path, props):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 4, 4])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["image"], ["out"])], "g", [x], [y])
    )
    for key, value in props:
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_metadata_is_read_from_the_protobuf_as_onnx_wrote_it(tmp_path):
    meta = ModelMetadata("resnet18", [64, 64], 0.5, None, "0" * 64, "t", pixel_threshold=0.25)
    path = write(tmp_path / "m.onnx", [("other", "x"), (METADATA_KEY, meta.to_json())])
    assert onnx_metadata_entries(path) == [("other", "x"), (METADATA_KEY, meta.to_json())]
    assert read_onnx_metadata(path) == meta


@pytest.mark.parametrize(
    "props, message",
    [
        ([], "has no 'rd_edge' metadata"),
        ([(METADATA_KEY, "{}"), (METADATA_KEY, "{}")], "2 'rd_edge' metadata entries"),
    ],
)
def test_missing_or_doubled_metadata_is_refused(tmp_path, props, message):
    with pytest.raises(MetadataError, match=message):
        read_onnx_metadata(write(tmp_path / "m.onnx", props))


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(MetadataError, match="not a readable ONNX model|has no 'rd_edge' metadata"):
        read_onnx_metadata(tmp_path / "x.onnx")
    with pytest.raises(MetadataError, match="expected an ONNX model written by rd-export"):
        read_onnx_metadata(tmp_path / "missing.onnx")
