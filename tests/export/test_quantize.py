"""int8 Q/DQ quantization: what is quantized, in which form for each target, and what it costs."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from rd_edge.core.errors import ExportError, MetadataError
from rd_edge.core.metadata import METADATA_KEY
from rd_export.accuracy import compare_graphs, pearson
from rd_export.cli import main as export_main
from rd_export.graph import read_metadata
from rd_export.quantize import BACKBONE_PREFIXES, check_tensorrt_qdq, int8_calibration_paths, quantize_int8

TARGETS = ("tensorrt", "cpu")


@pytest.fixture(scope="module")
def int8_graphs(r18_onnx, demo_category, tmp_path_factory):
    """Both flavours of the session's random-weight resnet18 graph, calibrated on 8 good images."""
    out = tmp_path_factory.mktemp("int8")
    reports = {
        t: quantize_int8(r18_onnx, out / f"r18_{t}.onnx", demo_category, target=t, max_images=8, scope="full")
        for t in TARGETS
    }
    return {t: (onnx.load(str(r.onnx_path)), r) for t, r in reports.items()}


def producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def initializers(model):
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def dq_nodes(model, kind):
    """DequantizeLinear nodes feeding convolution weights ("weight") or anything else ("activation")."""
    weight_inputs = {n.input[1] for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    return [
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and (n.output[0] in weight_inputs) == (kind == "weight")
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_backbone_convs_quantized_head_float(int8_graphs, target):
    model, report = int8_graphs[target]
    src = producers(model)
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    backbone = [n for n in convs if n.name.startswith(BACKBONE_PREFIXES)]
    head = [n for n in convs if n.name.startswith("/head/")]
    assert len(backbone) == 38 and len(head) == 11  # resnet18: 38 teacher/OCBE/student convs
    if target == "cpu":  # ORT has no quantized ConvTranspose: the cpu flavour rewrites those 6 as Conv
        assert not [n for n in model.graph.node if n.op_type == "ConvTranspose"]
        assert sum(n.op_type == "DepthToSpace" for n in model.graph.node) == 6
        backbone = [n for n in backbone if n.op_type == "Conv"]
    for n in backbone:  # weight and input activation both come through DequantizeLinear
        assert src[n.input[1]].op_type == "DequantizeLinear", n.name
        assert src[n.input[0]].op_type == "DequantizeLinear", n.name
    inits = initializers(model)
    for n in head:  # ones kernels and blur taps stay float initializers
        assert n.input[1] in inits and inits[n.input[1]].dtype == np.float32, n.name
    # No QuantizeLinear anywhere in the anomaly-map reduction, nor on its outputs.
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        assert not q.name.startswith("/head/")
        origin = src.get(q.input[0])
        assert origin is None or not origin.name.startswith("/head/"), q.name
    assert report.quantized_nodes == len(backbone) and report.float_convs == 49 - len(backbone)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]  # TensorRT 8.5 parses 17


def test_default_scope_quantizes_bottleneck_and_student_only(r18_onnx, demo_category, tmp_path):
    report = quantize_int8(r18_onnx, tmp_path / "s.onnx", demo_category, target="tensorrt", max_images=2)
    model = onnx.load(str(report.onnx_path))
    src = producers(model)
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    quantized = {n.name for n in convs if n.input[1] in src and src[n.input[1]].op_type == "DequantizeLinear"}
    in_scope = {n.name for n in convs if n.name.startswith(("/rd/ocbe/bn_layer/", "/rd/student/"))}
    assert quantized == in_scope and len(quantized) == 20  # resnet18: 5 bottleneck + 15 student
    assert report.scope == "student" and read_metadata(model).extra["int8_scope"] == "student"
    with pytest.raises(ExportError, match=r"--int8-scope 'half': expected one of student, full"):
        quantize_int8(r18_onnx, tmp_path / "x.onnx", demo_category, scope="half")


@pytest.mark.parametrize("target", TARGETS)
def test_metadata_says_int8_with_calibration_details(int8_graphs, target):
    model, report = int8_graphs[target]
    meta = read_metadata(model)
    assert meta.precision == "int8"
    assert meta.extra["int8_target"] == target
    assert meta.extra["calibration_images"] == 8 == report.calibration_images
    assert meta.extra["calibration_method"] == "mean-minmax" and meta.extra["int8_scope"] == "full"
    assert meta.extra["int8_headroom"] == 2.0 == report.headroom
    assert sum(p.key == METADATA_KEY for p in model.metadata_props) == 1


def test_tensorrt_flavour_is_symmetric_int8_with_per_channel_weights(int8_graphs):
    model, _ = int8_graphs["tensorrt"]
    inits = initializers(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for n in qdq:  # TensorRT: every zero point is int8 0
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
    consumers = {i: n for n in model.graph.node for i in n.input}
    for dq in dq_nodes(model, "weight"):
        conv = consumers[dq.output[0]]
        scale = inits[dq.input[1]]
        axis = next(a.i for a in dq.attribute if a.name == "axis")
        # Axis 0: a Conv kernel's output channels [K,C,r,s]; a ConvTranspose kernel's input
        # channels [C,K,r,s], the only axis TensorRT's deconvolution kernels take.
        assert axis == 0, conv.name
        weight_src = producers(model)[dq.input[0]]  # float weight -> Q -> DQ, TensorRT folds it
        assert weight_src.op_type == "QuantizeLinear"
        weight = inits[weight_src.input[0]]
        assert scale.shape == (weight.shape[axis],) and (scale > 0).all()
    for conv in (n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose") and len(n.input) == 3):
        assert conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32  # float bias


def test_tensorrt_check_refuses_what_tensorrt_cannot_build(int8_graphs):
    check_tensorrt_qdq(int8_graphs["tensorrt"][0])  # passes
    with pytest.raises(ExportError, match=r"TensorRT needs int8 zero points of 0, found (uint8|int32)"):
        check_tensorrt_qdq(int8_graphs["cpu"][0])
    model = onnx.ModelProto()
    model.CopyFrom(int8_graphs["tensorrt"][0])
    convt = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    dq = next(n for n in model.graph.node if n.output[0] == convt.input[1])
    next(a for a in dq.attribute if a.name == "axis").i = 1
    with pytest.raises(
        ExportError, match=r"weights quantized on axis 1, TensorRT's deconvolution needs axis 0"
    ):
        check_tensorrt_qdq(model)


def test_cpu_flavour_uses_uint8_activations_and_int8_weights(int8_graphs):
    model, _ = int8_graphs["cpu"]
    inits = initializers(model)
    for dq in dq_nodes(model, "activation"):
        assert inits[dq.input[2]].dtype in (np.uint8, np.int32), dq.name  # int32: biases
    assert any(inits[dq.input[2]].dtype == np.uint8 for dq in dq_nodes(model, "activation"))
    for dq in dq_nodes(model, "weight"):
        assert inits[dq.input[0]].dtype == np.int8 and not inits[dq.input[2]].any(), dq.name


FIRST_ACTIVATION = "/normalize/Add_output_0"  # the image, normalized in the graph: the first tensor quantized


def _first_activation_per_image(fp32_onnx, images):
    """[N] (min, max) of FIRST_ACTIVATION for each image, by the fp32 graph."""
    import onnxruntime as ort

    model = onnx.load(str(fp32_onnx))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(FIRST_ACTIVATION, onnx.TensorProto.FLOAT, None)
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    tensors = [session.run([FIRST_ACTIVATION], {"image": images[i : i + 1]})[0] for i in range(len(images))]
    return np.array([(t.min(), t.max()) for t in tensors], dtype=np.float64)


@pytest.mark.parametrize("target", TARGETS)
def test_ranges_are_the_mean_of_each_images_extremes_widened(int8_graphs, r18_onnx, demo_category, target):
    """A few odd good images must not set an activation's range (trained wide_resnet50_2: int8
    scores anti-correlated with fp32 when they did, in both flavours), and defects must not be
    clipped at the good images' range: the first activation's range is exactly twice the mean of
    each calibration image's min and max (u8: zero included; TensorRT's symmetric int8: the
    larger magnitude, zero point 0)."""
    from rd_edge.core.onnx_props import read_onnx_metadata
    from rd_export.quantize import load_int8_calibration_batch

    images = load_int8_calibration_batch(
        int8_calibration_paths(demo_category, 8), read_onnx_metadata(r18_onnx)
    )
    extremes = _first_activation_per_image(r18_onnx, images)
    lo, hi = min(extremes[:, 0].mean(), 0.0), max(extremes[:, 1].mean(), 0.0)
    assert extremes[:, 1].max() > hi  # the global extremes are wider: the mean is what is tested
    model, _ = int8_graphs[target]
    inits = initializers(model)
    (q,) = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == FIRST_ACTIVATION]
    if target == "cpu":
        scale, zero_point = (hi - lo) / 255, round(-lo / ((hi - lo) / 255))
    else:
        scale, zero_point = max(-lo, hi) / 127, 0
    assert float(inits[q.input[1]]) == pytest.approx(2.0 * scale, rel=1e-5)
    assert int(inits[q.input[2]]) == zero_point


def test_widening_scales_activations_keeps_weights_and_bias_values(int8_graphs):
    """x2 on a quantized graph: every activation scale doubles with its zero point kept, the
    weights' quantization is untouched, and each int32 bias still dequantizes to the same value
    (within half its new step), at input scale x weight scale as QLinearConv applies it."""
    from rd_export.quantize import widen_activation_scales

    base, _ = int8_graphs["cpu"]
    wide = onnx.ModelProto()
    wide.CopyFrom(base)
    assert widen_activation_scales(wide, 0.5) > 20
    before, after = initializers(base), initializers(wide)
    prod = producers(wide)
    activations = [n for n in wide.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in after]
    for q in activations:
        np.testing.assert_allclose(after[q.input[1]], 0.5 * before[q.input[1]], rtol=1e-6)
        np.testing.assert_array_equal(after[q.input[2]], before[q.input[2]])
    readers = [n for n in wide.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in prod]
    for dq in readers:  # each activation's DQ dequantizes at its Q's (new) scale
        q = prod[dq.input[0]]
        np.testing.assert_array_equal(after[dq.input[1]], after[q.input[1]])
    for dq in dq_nodes(wide, "weight"):
        np.testing.assert_array_equal(after[dq.input[1]], before[dq.input[1]])
    biases = 0
    for conv in (n for n in wide.graph.node if n.op_type == "Conv" and len(n.input) > 2):
        dq = prod[conv.input[2]]
        if after[dq.input[0]].dtype != np.int32:
            continue
        x_scale, w_scale = (after[prod[t].input[1]] for t in conv.input[:2])
        np.testing.assert_allclose(after[dq.input[1]], x_scale * w_scale, rtol=1e-6)
        value_before = before[dq.input[0]] * before[dq.input[1]].astype(np.float64)
        value_after = after[dq.input[0]] * after[dq.input[1]].astype(np.float64)
        assert np.abs(value_after - value_before).max() <= 0.5 * after[dq.input[1]].max() + 1e-9
        biases += 1
    assert biases > 10


@pytest.mark.parametrize("scope", [[], ["--int8-scope", "auto", "--min-spearman", "-1"]])
def test_cli_int8_headroom_sets_the_onnx_ranges(r18_onnx, demo_category, tmp_path, capsys, scope):
    out = tmp_path / "q.onnx"
    args = [str(r18_onnx), "--precision", "int8", "--calib-dir", str(demo_category), "--calib-images", "4"]
    assert export_main(args + scope + ["--int8-headroom", "3", "-o", str(out)]) == 0
    assert "activation ranges x3" in capsys.readouterr().out
    assert read_metadata(onnx.load(str(out))).extra["int8_headroom"] == 3.0


@pytest.mark.parametrize("target", TARGETS)
def test_int8_maps_follow_fp32_on_random_weights(int8_graphs, r18_onnx, demo_category, target):
    """Even an untrained graph's maps must survive quantization (a broken Q/DQ decorrelates them)."""
    model, report = int8_graphs[target]
    result = compare_graphs(r18_onnx, report.onnx_path, demo_category, threads=2)
    assert result.map_pearson > 0.98, result.format()


# --- accuracy on a trained model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_graph(tmp_path_factory):
    """A resnet18 trained briefly at 96 px on a demo category with 36 test images, as ONNX.

    96 px and 100 steps (about 15 s here) is the least that detects at image level (fp32 image
    AUROC 0.68); at 64 px the image AUROC stays near 0.5 and the comparison would mean nothing.
    """
    import warnings

    from rd_edge.data import write_demo_dataset
    from rd_edge.train import TrainConfig, train
    from rd_export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("trained")
    (category,) = write_demo_dataset(
        root,
        categories=["weave"],
        image_size=TRAIN_SIZE,
        n_train=16,
        n_test_good=12,
        n_test_per_defect=6,
        seed=0,
    )
    cfg = TrainConfig(
        data=str(category),
        out=str(root / "m.pt"),
        backbone="resnet18",
        image_size=TRAIN_SIZE,
        steps=TRAIN_STEPS,
        batch_size=8,
        teacher_weights="none",
        device="cpu",
        seed=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-teacher warning
        train(cfg, progress=False)
    export_onnx(root / "m.pt", root / "m.onnx", verify=False)
    return root / "m.onnx", category


TRAIN_SIZE, TRAIN_STEPS = 96, 100
# One swapped good/defect pair moves image AUROC by 1/288 on 36 test images, so 0.01 would be
# three swaps: the test allows 0.02. The measured figure (120 test images, a resnet18 trained
# 1200 steps at 128 px) is in docs/tensorrt_int8.md: within 0.01 for both flavours.
AUROC_TOLERANCE = 0.02


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_int8_accuracy_on_a_trained_model(trained_graph, tmp_path, target):
    fp32, category = trained_graph
    int8 = quantize_int8(fp32, tmp_path / f"{target}.onnx", category, target=target).onnx_path
    result = compare_graphs(fp32, int8, category, threads=2)
    assert result.image_auroc_ref > 0.6, (
        f"the fp32 model detects nothing, the test is void: {result.format()}"
    )
    assert abs(result.image_auroc_delta) <= AUROC_TOLERANCE, result.format()
    assert abs(result.pixel_auroc - result.pixel_auroc_ref) <= AUROC_TOLERANCE, result.format()
    assert result.map_pearson > 0.995, result.format()


# --- bad input --------------------------------------------------------------------------------


def test_empty_calibration_folder_is_one_clear_error(r18_onnx, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match=r"--calib-dir .*empty: expected good images .* found none"):
        quantize_int8(r18_onnx, tmp_path / "x.onnx", empty)
    rc = export_main(
        [str(r18_onnx), "--precision", "int8", "--calib-dir", str(empty), "-o", str(tmp_path / "x.onnx")]
    )
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: --calib-dir") and err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


def test_missing_calibration_folder_and_unreadable_image(r18_onnx, tmp_path):
    with pytest.raises(ExportError, match=r"expected a folder of good images .* found no such folder"):
        int8_calibration_paths(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ExportError, match=r"calibration image .*broken\.png is unreadable"):
        quantize_int8(r18_onnx, tmp_path / "x.onnx", bad)


def test_category_folder_calibrates_on_train_good_only(demo_category):
    paths = int8_calibration_paths(demo_category, max_images=5)
    assert len(paths) == 5 and all(p.parent.name == "good" and p.parent.parent.name == "train" for p in paths)


def test_onnx_without_metadata_is_refused(r18_onnx, demo_category, tmp_path, capsys):
    model = onnx.load(str(r18_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(MetadataError, match=r"has no 'rd_edge' metadata"):
        quantize_int8(bare, tmp_path / "x.onnx", demo_category)
    assert export_main([str(bare), "--precision", "int8", "--calib-dir", str(demo_category)]) == 1
    assert "no 'rd_edge' metadata" in capsys.readouterr().err


def test_cli_checkpoint_to_int8_cpu_graph(r18_checkpoint, demo_category, tmp_path, capsys):
    """Without an engine build, --precision int8 makes the CPU flavour (no --int8-target needed)."""
    out = tmp_path / "m_int8.onnx"
    rc = export_main(
        [
            str(r18_checkpoint),
            "--precision",
            "int8",
            "--calib-dir",
            str(demo_category),
            "--calib-images",
            "4",
            "--no-verify",
            "-o",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    meta = read_metadata(onnx.load(str(out)))
    assert meta.precision == "int8" and meta.extra["int8_target"] == "cpu"
    assert meta.extra["calibration_images"] == 4
    captured = capsys.readouterr()
    assert "20 convolutions quantized" in captured.out  # the 6 ConvTranspose too, as 1x1 Conv + DepthToSpace
    # The cost of int8, on the calibration images, against the fp32 graph it came from.
    line = next(x for x in captured.out.splitlines() if x.startswith("fp32 vs int8 on 4 calibration images"))
    assert "max |d normalized score|" in line and "verdicts changed" in line


def test_int8_agreement_compares_scores_and_warns_past_the_bound(r18_onnx, demo_category, tmp_path):
    from rd_export.accuracy import ScoreAgreement, score_agreement
    from rd_export.quantize import int8_calibration_paths, quantize_int8

    out = tmp_path / "q.onnx"
    quantize_int8(r18_onnx, out, demo_category, target="cpu", max_images=4)
    paths = int8_calibration_paths(demo_category, 4)
    same = score_agreement(r18_onnx, r18_onnx, paths)
    assert same.max_abs_score == 0 and same.verdict_flips == 0 and same.ok and same.warning() is None
    moved = score_agreement(r18_onnx, out, paths)
    assert moved.n_images == 4 and moved.max_abs_score > 0  # int8 is not bit-identical
    flipped = ScoreAgreement(4, 1.0, 0.2, 0.01, verdict_flips=1, score_pearson=0.99)
    assert not flipped.ok and "verdict" in flipped.warning()
    far = ScoreAgreement(4, 1.0, 0.2, 0.3, verdict_flips=0, score_pearson=0.99)
    assert not far.ok and "--calib-images" in far.warning()


def test_quantizing_from_onnx_does_not_import_torch(r18_onnx, demo_category, tmp_path):
    code = textwrap.dedent(f"""
        import json, sys
        from rd_export.cli import main
        rc = main([{str(r18_onnx)!r}, "--precision", "int8", "--calib-dir", {str(demo_category)!r},
                   "--calib-images", "2", "-o", {str(tmp_path / "q.onnx")!r}])
        print(json.dumps({{"rc": rc, "torch": "torch" in sys.modules}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "torch": False}, proc.stderr


def test_pearson_is_one_for_identical_maps_and_refuses_constant():
    a = np.random.default_rng(0).random((2, 8, 8))
    assert pearson(a, a) == pytest.approx(1.0)
    with pytest.raises(ExportError, match="constant"):
        pearson(a, np.zeros_like(a))


def test_conv_transpose_as_conv_is_exact_in_fp32(r18_onnx, tmp_path):
    """The cpu flavour's rewrite (1x1 Conv + DepthToSpace for each 2x2 stride-2 ConvTranspose)
    computes the same map and score as the exported graph."""
    from rd_edge.runtime import load_runner
    from rd_export.rewrite import conv_transpose_as_conv

    model = onnx.load(str(r18_onnx))
    assert conv_transpose_as_conv(model) == 6
    assert not [n for n in model.graph.node if n.op_type == "ConvTranspose"]
    out = tmp_path / "rewritten.onnx"
    onnx.save(model, str(out))
    images = np.random.default_rng(3).random((2, 3, 64, 64), dtype=np.float32)
    ref = load_runner(r18_onnx, "ort").infer({"image": images})
    got = load_runner(out, "ort").infer({"image": images})
    np.testing.assert_allclose(got["anomaly_map"], ref["anomaly_map"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(got["score"], ref["score"], atol=1e-6, rtol=0)


def test_calibration_images_are_spread_over_the_folder_with_halves_rounded_to_even(tmp_path):
    """11 good images, 4 wanted: indices linspace(0, 10, 4) = 0, 3.33, 6.67, 10 -> 0, 3, 7, 10;
    9 images, 3 wanted: 0, 4, 8; 10 images, 3 wanted: 0, 4.5 -> 4 (numpy rounds half to even), 9.
    A category folder calibrates on train/good only, never on its test defects."""
    import cv2

    from rd_export.quantize import int8_calibration_paths

    def folder(name, n):
        path = tmp_path / name / "train" / "good"
        path.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(path / f"{i:03d}.png"), np.zeros((2, 2, 3), np.uint8))
        (tmp_path / name / "test" / "crack").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / name / "test" / "crack" / "000.png"), np.zeros((2, 2, 3), np.uint8))
        return tmp_path / name

    for n, want, picked in [(11, 4, [0, 3, 7, 10]), (9, 3, [0, 4, 8]), (10, 3, [0, 4, 9]), (3, 8, [0, 1, 2])]:
        got = int8_calibration_paths(folder(f"c{n}_{want}", n), want)
        assert [int(p.stem) for p in got] == picked and all(p.parent.name == "good" for p in got)


@pytest.mark.parametrize("name", ["model.onnx", "MODEL.ONNX", "Model.Onnx"])
def test_rd_export_knows_an_onnx_graph_whatever_the_suffix_case(tmp_path, capsys, name):
    """An ONNX file (any case of .onnx) with nothing to do is told what rd-export can do with it,
    instead of being opened as a checkpoint."""
    from rd_export.cli import main as export_main

    model = tmp_path / name
    model.write_bytes(b"not read")
    assert export_main([str(model)]) == 1
    assert "is already ONNX" in capsys.readouterr().err


@pytest.mark.parametrize(
    "group,pads,rewritten", [(1, [0, 0, 0, 0], 1), (2, [0, 0, 0, 0], 0), (1, [1, 1, 1, 1], 0)]
)
def test_conv_transpose_rewrite_only_where_it_is_exact(group, pads, rewritten):
    """A grouped or padded ConvTranspose is left as it is (the 1x1 Conv + DepthToSpace form is the
    ungrouped, unpadded one); every graph computes what it did, checked with ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from rd_export.rewrite import conv_transpose_as_conv

    rng = np.random.default_rng(5)
    weight = rng.standard_normal((4, 4 // group, 2, 2)).astype(np.float32)  # [C_in, C_out / group, 2, 2]
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"], ["y"], name="up", strides=[2, 2], group=group, pads=pads
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(rng.standard_normal(4 // group * group).astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 4, 3, 5)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )[0]

    before = run(model)
    rewritten_model = onnx.ModelProto()
    rewritten_model.CopyFrom(model)
    assert conv_transpose_as_conv(rewritten_model) == rewritten
    assert [n.op_type for n in rewritten_model.graph.node] == (
        ["Conv", "DepthToSpace"] if rewritten else ["ConvTranspose"]
    )
    np.testing.assert_allclose(run(rewritten_model), before, atol=1e-5)
