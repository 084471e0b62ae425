"""OpenVINO int8 (NNCF): activation-range headroom and which layers stay float."""

import numpy as np
import pytest

from rd_edge.core.ir_props import read_ir_metadata
from rd_edge.core.onnx_props import read_onnx_metadata

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")


def _one_quantizer(weight: bool = False):
    """x [1,4] -> FakeQuantize(range 0..1, 256 levels) -> y; ``weight``: a second FakeQuantize
    on a constant, as NNCF quantizes a weight before compressing it."""
    from openvino import opset13 as ops

    x = ops.parameter([1, 4], np.float32, name="x")
    lo, hi = ops.constant(np.float32(0.0)), ops.constant(np.float32(1.0))
    y = ops.fake_quantize(x, lo, hi, lo, hi, 256)
    outputs = [y]
    if weight:
        w = ops.constant(np.array([[0.5, 1.6, 2.0, 0.1]], np.float32))
        outputs.append(ops.fake_quantize(w, lo, hi, lo, hi, 256))
    return ov.Model([o.output(0) for o in outputs], [x])


def test_headroom_stops_int8_clipping_what_passes_the_calibrated_range():
    """A defect drives activations past the range calibrated on good images: x1 clips them to its
    top, x2 lets them through within the (twice coarser) step; a weight's quantizer is untouched."""
    from rd_export.openvino_int8 import widen_activation_ranges

    x = np.array([[0.2, 0.9, 1.6, 1.95]], np.float32)
    clipped = ov.Core().compile_model(_one_quantizer(), "CPU")(x)[0]
    assert np.allclose(clipped, [0.2, 0.9, 1.0, 1.0], atol=1 / 255)
    model = _one_quantizer(weight=True)
    assert widen_activation_ranges(model, 2.0) == 1
    out = ov.Core().compile_model(model, "CPU")({"x": x})
    assert np.allclose(out[0], x, atol=2 / 255 / 2 + 1e-6)
    assert np.allclose(out[1], [[0.5, 1.0, 1.0, 0.1]], atol=1 / 255)  # the weight's range as it was


@pytest.fixture(scope="module")
def full_ir(r18_onnx, demo_category, tmp_path_factory):
    from rd_export.openvino_int8 import quantize_ir

    folder = tmp_path_factory.mktemp("ov_int8")
    return {
        k: quantize_ir(r18_onnx, folder / f"full_x{k:g}.xml", demo_category, max_images=4, headroom=k)
        for k in (1.0, 3.0)
    }


def _ranges(xml):
    model = ov.Core().read_model(str(xml))
    return {
        op.get_friendly_name(): op.input_value(2).get_node().get_data().copy()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "FakeQuantize"
    }, model


def test_every_activation_range_is_widened_and_recorded(full_ir):
    plain, _ = _ranges(full_ir[1.0].xml_path)
    wide, model = _ranges(full_ir[3.0].xml_path)
    assert plain.keys() == wide.keys() and len(plain) > 20
    for name in plain:
        np.testing.assert_allclose(wide[name], 3.0 * plain[name], rtol=1e-6)
    assert read_ir_metadata(full_ir[3.0].xml_path).extra["int8_headroom"] == 3.0
    assert "activation ranges x3" in full_ir[3.0].format()
    # the residual Adds stay float: no quantizer feeds one (two roundings fewer per block)
    adds = [op for op in model.get_ordered_ops() if op.get_type_name() == "Add"]
    fed = [
        a.get_friendly_name()
        for a in adds
        for v in a.input_values()
        if v.get_node().get_type_name() == "FakeQuantize"
    ]
    assert adds and not fed, fed


def test_headroom_is_chosen_on_the_fidelity_images(r18_onnx, demo_category, full_ir):
    """Whichever factor reproduces the fidelity images' reference scores is the one chosen: here
    the reference is the x3 IR's own scores, so x3 scores the metric 1 and wins."""
    from rd_export.openvino_export import convert_onnx
    from rd_export.openvino_int8 import HEADROOMS, AccuracyTarget, choose_headroom, quantize_model
    from rd_export.quantize import int8_calibration_paths, load_int8_calibration_batch
    from rd_export.scope_search import FidelityBound, fidelity_images, scores_of

    meta = read_onnx_metadata(r18_onnx)
    fidelity = fidelity_images(demo_category, 4, demo_category / "test", meta)
    target = AccuracyTarget(
        fidelity, scores_of(full_ir[3.0].xml_path, fidelity.images), None, FidelityBound()
    )
    calib = load_int8_calibration_batch(int8_calibration_paths(demo_category, 4), meta)
    quantized = quantize_model(
        convert_onnx(r18_onnx), [calib[i : i + 1] for i in range(len(calib))], "full", 4
    )
    chosen, tried = choose_headroom(quantized, target)
    assert [k for k, _ in tried] == list(HEADROOMS)
    assert chosen == 3.0 and dict(tried)[3.0] == pytest.approx(1.0), tried


def _conv_biases(model) -> dict:
    """{Add after a Convolution: its bias constant}, by friendly name."""
    biases = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Add":
            continue
        sources = [v.get_node() for v in op.input_values()]
        if {s.get_type_name() for s in sources} == {"Convolution", "Constant"}:
            const = next(s for s in sources if s.get_type_name() == "Constant")
            biases[op.get_friendly_name()] = const.get_data().copy()
    return biases


def test_no_bias_correction_the_int8_biases_are_the_fp32_ones(r18_onnx, full_ir):
    """NNCF's bias correction, fitted on good images, cost fidelity on defects (resnet18 256 px,
    Spearman on the demo test images 0.9857 with it, 0.9964 without): rd-export leaves it off."""
    from rd_export.openvino_export import convert_onnx

    fp32 = _conv_biases(convert_onnx(r18_onnx))
    int8 = _conv_biases(ov.Core().read_model(str(full_ir[1.0].xml_path)))
    assert len(fp32) > 20 and int8.keys() == fp32.keys()
    for name, bias in fp32.items():
        np.testing.assert_array_equal(int8[name], bias, err_msg=name)
