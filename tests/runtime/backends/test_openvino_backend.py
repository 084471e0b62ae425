"""OpenVINO backend: IR export, parity with ONNX Runtime, selection, explicit precision, int8 (NNCF)."""

import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from helpers import one_line_error

from rd_edge.core.errors import BackendError, MetadataError
from rd_edge.core.ir_props import read_ir_metadata
from rd_edge.core.onnx_props import read_onnx_metadata
from rd_edge.runtime import Detector, load_runner
from rd_edge.runtime.backends import resolve_backend

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def r18_ir(r18_onnx, tmp_path_factory):
    from rd_export.openvino_export import export_ir

    return export_ir(r18_onnx, tmp_path_factory.mktemp("ir") / "r18.xml").xml_path


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)


def _bf16_here() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_ir_matches_onnxruntime_fp32(r18_onnx, r18_ir, batch):
    ref = load_runner(r18_onnx, "ort").infer({"image": batch})
    for runner in (load_runner(r18_ir), load_runner(r18_onnx, "openvino")):
        out = runner.infer({"image": batch})
        assert runner.name == "openvino" and runner.precision == "fp32"
        assert runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        np.testing.assert_allclose(out["anomaly_map"], ref["anomaly_map"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(out["score"], ref["score"], atol=1e-5, rtol=0)


def test_ir_carries_the_onnx_metadata(r18_onnx, r18_ir):
    onnx_meta, ir_meta = read_onnx_metadata(r18_onnx), read_ir_metadata(r18_ir)
    assert ir_meta.extra["format"] == "openvino" and ir_meta.precision == "fp32"
    for field in ("backbone", "image_size", "threshold", "score_stats", "checkpoint_sha256", "resize"):
        assert getattr(ir_meta, field) == getattr(onnx_meta, field)


def test_selection_by_suffix_and_by_name(r18_onnx, r18_ir):
    assert resolve_backend("model.xml") == "openvino" and resolve_backend("m.xml", "ov") == "openvino"
    with Detector(r18_ir) as det:
        assert det.backend == "openvino"
    with Detector(r18_onnx, backend="openvino", threads=1) as det:
        assert det.backend == "openvino" and det.runner.threads == 1
    with Detector(r18_onnx) as det:
        assert det.backend == "ort"


def test_bf16_only_when_asked_and_by_fidelity(r18_onnx, batch):
    ref = load_runner(r18_onnx, "ort").infer({"image": batch})
    if not _bf16_here():
        with pytest.raises(BackendError, match="lacks it.*precision='fp32'"):
            load_runner(r18_onnx, "openvino", precision="bf16")
        return
    runner = load_runner(r18_onnx, "openvino", precision="bf16")
    assert runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    out = runner.infer({"image": batch})
    diff = np.abs(out["anomaly_map"] - ref["anomaly_map"])
    assert 0 < diff.max() < 0.05  # bf16 really ran (not f32), and stays close
    assert np.corrcoef(out["anomaly_map"].ravel(), ref["anomaly_map"].ravel())[0, 1] > 0.99


def test_missing_pieces_are_clear_errors(r18_ir, tmp_path):
    xml = tmp_path / "lonely.xml"
    xml.write_bytes(r18_ir.read_bytes())
    with pytest.raises(BackendError, match=r"lonely\.bin are missing.*copy both"):
        load_runner(xml)
    bad = tmp_path / "twice.xml"
    root = ET.parse(r18_ir).getroot()
    rt = root.find("rt_info")
    rt.append(rt.find("rd_edge"))
    ET.ElementTree(root).write(bad)
    with pytest.raises(MetadataError, match="2 'rd_edge' runtime-info entries"):
        read_ir_metadata(bad)
    with pytest.raises(BackendError, match="does not take option.*providers"):
        load_runner(r18_ir, providers="cuda")


def test_missing_openvino_names_the_extra(r18_onnx, tmp_path):
    """No openvino installed: the runtime and rd-export each say which extra installs it, in one line."""
    code = (
        "import sys; sys.modules['openvino'] = None\n"
        "from rd_edge.runtime import load_runner\n"
        "from rd_export.cli import main\n"
        "try:\n    load_runner(sys.argv[1], 'openvino')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
        "sys.exit(main([sys.argv[1], '--format', 'openvino', '-o', sys.argv[2]]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(r18_onnx), str(tmp_path / "m.xml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        proc.stdout.startswith("BackendError the OpenVINO backend needs the openvino")
        and "pip install '.[openvino]'" in proc.stdout
    )
    assert proc.returncode == 1 and one_line_error(proc.stderr) and "'.[openvino]'" in proc.stderr
    assert not (tmp_path / "m.xml").exists()


def test_int8_ir_by_nncf_keeps_the_head_float(r18_onnx, demo_category, tmp_path):
    from rd_export.openvino_int8 import quantize_ir
    from rd_export.quantize import int8_calibration_paths, load_int8_calibration_batch

    report = quantize_ir(r18_onnx, tmp_path / "r18_int8.xml", demo_category, max_images=4)
    meta = read_ir_metadata(report.xml_path)
    assert meta.precision == "int8" and meta.extra["int8_scope"] == "full" and report.fake_quantize > 20
    import openvino as ov

    ops = ov.Core().read_model(str(report.xml_path)).get_ordered_ops()
    fq = [op.get_friendly_name() for op in ops if op.get_type_name() == "FakeQuantize"]
    assert not [n for n in fq if n.startswith("/head/")]
    # the student's ConvTranspose layers are int8 too (OpenVINO leaves them unnamed: named for NNCF)
    deconv_inputs = [
        op.input_value(0).get_node().get_type_name()
        for op in ops
        if op.get_type_name() == "ConvolutionBackpropData"
    ]
    assert deconv_inputs and set(deconv_inputs) == {"FakeQuantize"}, deconv_inputs
    images = load_int8_calibration_batch(
        int8_calibration_paths(demo_category / "test", 6), read_onnx_metadata(r18_onnx)
    )  # held out
    ref = load_runner(r18_onnx, "ort").infer({"image": images})
    out = load_runner(report.xml_path).infer({"image": images})
    assert np.corrcoef(out["anomaly_map"].ravel(), ref["anomaly_map"].ravel())[0, 1] > 0.98
    assert np.abs(out["score"] - ref["score"]).max() < 0.05 * np.abs(ref["score"]).max()
    _float_layers_run_as_the_metadata_says(report.xml_path, tmp_path)


def _float_layers_run_as_the_metadata_says(int8_xml, tmp_path):
    """An int8 IR runs its float layers in fp32 unless rd-export's search chose bf16 for them;
    bf16 then where the CPU has it, fp32 (only more faithful) where it does not."""
    from dataclasses import replace

    from rd_edge.runtime import cpu_capabilities
    from rd_edge.runtime.backends.openvino import default_inference_precision
    from rd_export.openvino_int8 import with_float_precision

    assert load_runner(int8_xml).precision == "fp32"
    marked = tmp_path / "int8_bf16_float.xml"
    with_float_precision(int8_xml, marked, "bf16")
    meta = read_ir_metadata(marked)
    assert meta.precision == "int8" and meta.extra["inference_precision"] == "bf16"
    assert default_inference_precision(meta, ["FP32", "INT8"]) == "fp32"
    assert default_inference_precision(meta, ["FP32", "BF16", "INT8"]) == "bf16"
    assert default_inference_precision(replace(meta, extra={}), ["FP32", "BF16"]) == "fp32"
    expected = "bf16" if "BF16" in cpu_capabilities() else "fp32"
    with load_runner(marked) as runner:
        assert runner.precision == expected
    with load_runner(marked, precision="fp32") as runner:  # asked for: what runs
        assert runner.precision == "fp32"


def test_shared_cpu_knobs_reach_the_sessions(r18_onnx, r18_ir, demo_category, capsys):
    """--threads and --no-spinning (ORT), --threads and --precision (OpenVINO) set what they say."""
    from rd_edge.runtime.cli import main as infer_main

    with Detector(r18_onnx, threads=1, spinning=False) as det:
        options = det.runner.session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    image = str(next((demo_category / "test" / "good").iterdir()))
    assert infer_main([str(r18_ir), image, "--threads", "1", "--precision", "fp32"]) == 0
    assert "on openvino (CPU, fp32 inference, 1 threads)" in capsys.readouterr().err
    assert infer_main([str(r18_ir), image, "--no-spinning"]) == 1  # OpenVINO has no such switch
    err = capsys.readouterr().err
    assert one_line_error(err) and "does not take option(s) ['spinning']" in err
