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


@pytest.mark.parametrize("args, message", [
    (["--format", "openvino", "--precision", "fp16"], "has no fp16 compute"),
    (["--precision", "bf16"], "bf16 is for --format openvino"),
    (["--format", "openvino", "-o", "m.onnx"], "an OpenVINO IR is model.xml"),
    (["--format", "openvino", "--engine"], "--engine and --triton-repo are for the ONNX format"),
    (["--format", "openvino", "--precision", "int8", "--int8-target", "cpu"], "quantized by NNCF"),
])
def test_refused_combinations(r18_onnx, args, message, capsys):
    assert export_main([str(r18_onnx), *args]) == 1
    err = capsys.readouterr().err
    assert one_line_error(err) and message in err
