"""The rd_edge metadata of an OpenVINO IR (rd_edge.core.ir_props): written by OpenVINO as
rd-export writes it, read back without openvino, and refused with what was expected, what was
found and what to do."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from rd_edge.core.errors import MetadataError
from rd_edge.core.ir_props import ir_weights_path, read_ir_metadata
from rd_edge.core.metadata import METADATA_KEY, ModelMetadata

ROOT = Path(__file__).resolve().parents[2]
META = ModelMetadata(
    "resnet18",
    [64, 48],
    0.5,
    {"min": 0.1, "max": 0.4, "mean": 0.2, "std": 0.05, "count": 16},
    "ab" * 32,
    "test",
    pixel_threshold=0.25,
    extra={"format": "openvino"},
)


@pytest.fixture(scope="module")
def ov():
    return pytest.importorskip("openvino")


def tiny_model(ov):
    """image [1,3,4,4] -> ReLU -> out: the smallest graph OpenVINO serializes."""
    import openvino.opset13 as ops

    image = ops.parameter([1, 3, 4, 4], ov.Type.f32, name="image")
    return ov.Model([ops.relu(image)], [image], "tiny")


def save_ir(ov, model, xml_path, meta=META):
    """What rd-export's save_ir does: the metadata JSON as top-level runtime info."""
    if meta is not None:
        model.set_rt_info(meta.to_json(), METADATA_KEY)
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return Path(xml_path)


def write_net(path, entries):
    """An IR .xml by hand (no openvino needed): <net> with the given rd_edge values."""
    net = ET.Element("net", name="tiny", version="11")
    ET.SubElement(net, "layers")
    rt = ET.SubElement(net, "rt_info")
    for value in entries:
        ET.SubElement(rt, METADATA_KEY, value=value)
    ET.ElementTree(net).write(path)
    return path


def test_metadata_round_trips_through_an_ir_openvino_wrote(ov, tmp_path):
    xml = save_ir(ov, tiny_model(ov), tmp_path / "model.xml")
    meta = read_ir_metadata(xml)
    assert meta == META
    assert (meta.backbone, meta.image_size, meta.height, meta.width) == ("resnet18", [64, 48], 64, 48)
    assert (meta.threshold, meta.pixel_threshold, meta.score_stats["count"]) == (0.5, 0.25, 16)
    # str and Path both name the file
    assert read_ir_metadata(str(xml)) == META


def test_the_weights_file_is_the_one_openvino_writes_beside_the_xml(ov, tmp_path):
    xml = save_ir(ov, tiny_model(ov), tmp_path / "sub" / "r18.int8.xml")
    assert ir_weights_path(xml) == tmp_path / "sub" / "r18.int8.bin"
    assert ir_weights_path(str(xml)) == tmp_path / "sub" / "r18.int8.bin"
    assert ir_weights_path(xml).is_file()
    assert sorted(p.name for p in xml.parent.iterdir()) == ["r18.int8.bin", "r18.int8.xml"]


def test_the_converters_copy_of_the_onnx_properties_is_not_read(ov, tmp_path):
    """OpenVINO's converter copies the ONNX's rd_edge property into <rt_info><framework>; after
    int8 quantization that copy still says fp32. Only the top-level entry counts, and an IR that
    has only the converter's copy (ovc run by hand, not rd-export) is refused."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 4, 4])
    proto = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["image"], ["out"])], "g", [x], [y])
    )
    proto.metadata_props.add(key=METADATA_KEY, value=replace(META, precision="fp32").to_json())
    onnx.save(proto, str(tmp_path / "m.onnx"))

    converted = save_ir(ov, ov.convert_model(str(tmp_path / "m.onnx")), tmp_path / "plain.xml", meta=None)
    assert ET.parse(converted).getroot().find(f"rt_info/framework/{METADATA_KEY}") is not None
    with pytest.raises(MetadataError) as info:
        read_ir_metadata(converted)
    assert str(info.value).startswith(f"{converted} has no 'rd_edge' metadata")
    assert "rd-export" in str(info.value)

    int8 = replace(META, precision="int8", extra={"format": "openvino", "int8_scope": "full"})
    quantized = save_ir(ov, ov.convert_model(str(tmp_path / "m.onnx")), tmp_path / "int8.xml", int8)
    assert read_ir_metadata(quantized) == int8


def test_the_metadata_is_read_without_openvino(ov, tmp_path):
    """The runtime reads an IR's metadata before (or without) loading OpenVINO."""
    xml = save_ir(ov, tiny_model(ov), tmp_path / "model.xml")
    code = (
        "import sys; sys.modules['openvino'] = None\n"
        "from rd_edge.core.ir_props import read_ir_metadata\n"
        "m = read_ir_metadata(sys.argv[1])\n"
        "assert 'openvino' not in [k.split('.')[0] for k, v in sys.modules.items() if v is not None]\n"
        "print(m.to_json())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(xml)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert ModelMetadata.from_json(proc.stdout.strip()) == META


@pytest.mark.parametrize("what, found", [("missing.xml", "no such file"), ("folder.xml", "a folder")])
def test_no_file_says_what_was_found_and_what_is_expected(tmp_path, what, found):
    path = tmp_path / what
    if what == "folder.xml":
        path.mkdir()
    with pytest.raises(MetadataError) as info:
        read_ir_metadata(path)
    assert str(info.value) == (
        f"cannot read model metadata from {path}: {found}; expected an OpenVINO IR (.xml + .bin) "
        f"written by rd-export --format openvino"
    )


def test_a_file_that_is_not_xml_is_told_to_be_re_exported(tmp_path):
    path = tmp_path / "model.xml"
    path.write_bytes(b"\x00\x01 not xml at all <<<")
    with pytest.raises(MetadataError) as info:
        read_ir_metadata(path)
    text = str(info.value)
    assert text.startswith(f"{path} is not a readable OpenVINO IR (")
    assert text.endswith("); re-export it with rd-export --format openvino")
    assert isinstance(info.value.__cause__, ET.ParseError)


def test_xml_that_is_not_an_ir_names_the_root_it_found(tmp_path):
    path = tmp_path / "model.xml"
    path.write_text('<?xml version="1.0"?><svg><rt_info><rd_edge value="{}"/></rt_info></svg>')
    with pytest.raises(MetadataError) as info:
        read_ir_metadata(path)
    assert str(info.value) == f"{path}: expected an OpenVINO IR (root element <net>), found <svg>"


def test_an_entry_doubled_by_editing_is_refused(tmp_path):
    path = write_net(tmp_path / "model.xml", [META.to_json(), META.to_json()])
    with pytest.raises(MetadataError) as info:
        read_ir_metadata(path)
    assert str(info.value) == (
        f"{path} has 2 'rd_edge' runtime-info entries, expected one; "
        f"the file was edited after export: re-export it with rd-export"
    )
    assert read_ir_metadata(write_net(tmp_path / "one.xml", [META.to_json()])) == META


def test_an_ir_without_the_entry_says_how_to_export(tmp_path):
    path = write_net(tmp_path / "model.xml", [])
    with pytest.raises(MetadataError) as info:
        read_ir_metadata(path)
    assert str(info.value) == (
        f"{path} has no 'rd_edge' metadata; it was not exported by rd-export. "
        f"Export it with `rd-export model.pt -o model.onnx`."
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"image_size": [0, 64]}, "metadata image_size must be [H, W] integers in 1..8192, found [0, 64]"),
        (
            {"threshold": "high"},
            "threshold must be a finite number or null, found 'high'; re-export the model",
        ),
        ({"format_version": 99}, "metadata format version 99 is newer than this rd-edge reads"),
        ({"resize": "cubic"}, "metadata resize rule 'cubic' is unknown to this rd-edge"),
    ],
)
def test_the_entry_is_validated_and_errors_name_the_ir(tmp_path, edit, message):
    """The same validation as an ONNX file's metadata, with the .xml named as the source."""
    data = {**json.loads(META.to_json()), **edit}
    path = write_net(tmp_path / "model.xml", [json.dumps(data)])
    with pytest.raises(MetadataError) as info:
        read_ir_metadata(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_an_entry_that_is_not_json_names_the_ir(tmp_path):
    path = write_net(tmp_path / "model.xml", ["{not json"])
    with pytest.raises(MetadataError, match="'rd_edge' metadata is not valid JSON") as info:
        read_ir_metadata(path)
    assert str(info.value).startswith(f"{path}: ")
