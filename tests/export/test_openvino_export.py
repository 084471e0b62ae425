"""rd-export --format openvino: the command line, its precisions and its refusals."""

import pytest
from helpers import one_line_error

from rd_edge.core.ir_props import read_ir_metadata
from rd_edge.runtime import load_runner
from rd_export.cli import main as export_main

pytest.importorskip("openvino")


def test_bf16_ir_runs_bf16_by_default_where_the_cpu_has_it(r18_onnx, tmp_path, capsys):
    out = tmp_path / "r18_bf16.xml"
    assert export_main([str(r18_onnx), "--format", "openvino", "--precision", "bf16", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(fp32 inference) vs ONNX Runtime fp32" in text and "(tolerance 0.0001) ok" in text
    assert read_ir_metadata(out).precision == "bf16" and out.with_suffix(".bin").is_file()
    import openvino as ov

    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert load_runner(out).precision == "bf16"
    assert load_runner(out, precision="fp32").precision == "fp32"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "openvino", "--precision", "fp16"], "has no fp16 compute"),
        (["--precision", "bf16"], "bf16 is for --format openvino"),
        (["--format", "openvino", "-o", "m.onnx"], "an OpenVINO IR is model.xml"),
        (["--format", "openvino", "--engine"], "--engine and --triton-repo are for the ONNX format"),
        (["--format", "openvino", "--precision", "int8", "--int8-target", "cpu"], "quantized by NNCF"),
        (["--format", "openvino", "--precision", "int8", "--int8-headroom", "0.5"], "expected a factor >= 1"),
        (["--format", "openvino", "--int8-headroom", "2"], "--int8-headroom is for --precision int8"),
    ],
)
def test_refused_combinations(r18_onnx, args, message, capsys):
    assert export_main([str(r18_onnx), *args]) == 1
    err = capsys.readouterr().err
    assert one_line_error(err) and message in err


def test_each_precision_gets_its_own_ir_beside_the_model(tmp_path):
    """fp32, bf16 and int8 IRs of one model never overwrite one another (issue 28: identities)."""
    from rd_export.openvino_export import default_ir_path

    names = {p: default_ir_path(tmp_path / "line3.onnx", p) for p in ("fp32", "bf16", "int8")}
    assert {p: n.name for p, n in names.items()} == {
        "fp32": "line3.xml",
        "bf16": "line3_bf16.xml",
        "int8": "line3_int8.xml",
    }
    assert all(n.parent == tmp_path for n in names.values())
