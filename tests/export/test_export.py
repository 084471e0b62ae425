"""rd-export: one fused, clean graph that agrees with torch in ONNX Runtime and OpenCV DNN."""

import shutil
import subprocess
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import SCORE_STATS, make_checkpoint

from rd_edge import load_checkpoint
from rd_edge.core.metadata import METADATA_KEY, ModelMetadata
from rd_export.cli import main as export_main
from rd_export.graph import read_metadata
from rd_export.onnx_export import export_onnx
from rd_export.verify import run_opencv

TOL = 1e-4  # fp32 parity, map and score, absolute


def torch_outputs(checkpoint, images):
    with torch.no_grad():
        amap, score = load_checkpoint(checkpoint)(torch.from_numpy(images))
    return amap.numpy(), score.numpy()


def ort_outputs(onnx_path, images):
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["anomaly_map", "score"], {"image": images})


# wide_resnet50_2 takes ~20 s here: it runs in `make test`, not in `make test-fast`.
@pytest.mark.parametrize(
    "backbone", ["resnet18", "resnet34", "resnet50", pytest.param("wide_resnet50_2", marks=pytest.mark.slow)]
)
def test_parity_torch_ort_opencv_for_each_backbone(tmp_path, backbone):
    ckpt = make_checkpoint(tmp_path / "m.pt", backbone, 64)
    report = export_onnx(ckpt, tmp_path / "m.onnx")  # verification on: raises beyond tolerance
    assert report.verification.ok and len(report.verification.results) == 2
    images = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)
    ref_map, ref_score = torch_outputs(ckpt, images)
    for amap, score in (ort_outputs(tmp_path / "m.onnx", images), run_opencv(tmp_path / "m.onnx", images)):
        np.testing.assert_allclose(amap, ref_map, atol=TOL)
        np.testing.assert_allclose(score, ref_score, atol=TOL)


DEBIAN_PYTHON = "/usr/bin/python3"


def debian_opencv_version():
    if not shutil.which(DEBIAN_PYTHON):
        return None
    probe = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import cv2; print(cv2.__version__)"], capture_output=True, text=True
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


@pytest.mark.skipif(
    debian_opencv_version() is None,
    reason="Debian's OpenCV (python3-opencv) not installed; .ci/run installs it",
)
def test_debian_opencv_46_loads_and_agrees(r18_onnx, r18_checkpoint, tmp_path):
    """The C++ example builds against Debian's OpenCV 4.6: the same graph must load and agree there."""
    images = np.random.default_rng(2).random((2, 3, 64, 64), dtype=np.float32)
    np.save(tmp_path / "in.npy", images)
    script = textwrap.dedent(f"""
        import numpy as np, cv2
        net = cv2.dnn.readNetFromONNX({str(r18_onnx)!r})
        maps, scores = [], []
        for img in np.load({str(tmp_path / "in.npy")!r}):
            net.setInput(img[None], "image")
            m, s = net.forward(["anomaly_map", "score"])
            maps.append(m.reshape(1, 1, 64, 64)); scores.append(float(s.ravel()[0]))
        np.save({str(tmp_path / "map.npy")!r}, np.concatenate(maps))
        np.save({str(tmp_path / "score.npy")!r}, np.array(scores, np.float32))
        print(cv2.__version__)
    """)
    run = subprocess.run([DEBIAN_PYTHON, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    ref_map, ref_score = torch_outputs(r18_checkpoint, images)
    np.testing.assert_allclose(np.load(tmp_path / "map.npy"), ref_map, atol=TOL)
    np.testing.assert_allclose(np.load(tmp_path / "score.npy"), ref_score, atol=TOL)


def test_dynamic_batch_of_four_equals_four_singles(r18_onnx):
    images = np.random.default_rng(3).random((4, 3, 64, 64), dtype=np.float32)
    batch_map, batch_score = ort_outputs(r18_onnx, images)
    for i in range(4):
        m, s = ort_outputs(r18_onnx, images[i : i + 1])
        np.testing.assert_allclose(batch_map[i : i + 1], m, atol=1e-5)
        np.testing.assert_allclose(batch_score[i : i + 1], s, atol=1e-5)


def test_graph_interface_and_score_is_map_max(r18_onnx):
    model = onnx.load(str(r18_onnx))
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    (inp,) = model.graph.input
    assert inp.name == "image" and dims(inp) == ["N", 3, 64, 64]
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        ("anomaly_map", ["N", 1, 64, 64]),
        ("score", ["N"]),
    ]
    amap, score = ort_outputs(r18_onnx, np.random.default_rng(4).random((3, 3, 64, 64), dtype=np.float32))
    np.testing.assert_array_equal(score, amap.reshape(3, -1).max(axis=1))


def test_graph_is_clean_for_tensorrt_and_opencv(r18_onnx):
    model = onnx.load(str(r18_onnx))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"BatchNormalization", "Identity", "Dropout", "ReduceSum", "Max"}
    assert model.opset_import[0].version == 17
    onnx.checker.check_model(model, full_check=True)
    # The blur is two 1-D convolutions (33 taps), not a dense 33x33 kernel.
    kernels = [
        tuple(i.dims) for i in model.graph.initializer if tuple(i.dims)[-2:] in ((1, 33), (33, 1), (33, 33))
    ]
    assert kernels and all(k[-2:] != (33, 33) for k in kernels)


def test_metadata_round_trip(r18_onnx, r18_checkpoint):
    model = onnx.load(str(r18_onnx))
    assert [p.key for p in model.metadata_props].count(METADATA_KEY) == 1
    meta = read_metadata(model)
    assert meta.backbone == "resnet18" and meta.image_size == [64, 64] and meta.precision == "fp32"
    assert meta.threshold == 1.2 and meta.score_stats == SCORE_STATS
    assert (
        meta.input["layout"] == "NCHW" and meta.input["color"] == "RGB" and meta.input["range"] == [0.0, 1.0]
    )
    assert meta.blur_sigma == 4.0 and len(meta.mean) == 3 and len(meta.std) == 3
    import hashlib

    assert meta.checkpoint_sha256 == hashlib.sha256(r18_checkpoint.read_bytes()).hexdigest()
    # ONNX Runtime exposes the same JSON (the runtime reads it from there, without the onnx package).
    session = ort.InferenceSession(str(r18_onnx), providers=["CPUExecutionProvider"])
    assert ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map[METADATA_KEY]) == meta


def test_fp16_graph_has_float32_io_and_agrees_within_its_tolerance(r18_checkpoint, tmp_path):
    report = export_onnx(r18_checkpoint, tmp_path / "m16.onnx", precision="fp16")
    model = onnx.load(str(tmp_path / "m16.onnx"))
    float16 = onnx.TensorProto.FLOAT16
    assert all(
        v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        for v in [*model.graph.input, *model.graph.output]
    )
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    weights = [i for i in model.graph.initializer if i.name in conv_weights]
    # The network's convolutions carry fp16 weights; only the anomaly-map head stays float32.
    assert sum(i.data_type == float16 for i in weights) > 30
    assert all(i.name.startswith("/head/") for i in weights if i.data_type != float16)
    assert report.verification.ok and report.metadata.precision == "fp16"


def test_default_output_sits_next_to_checkpoint(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "model.pt")
    assert export_main([str(ckpt), "--no-verify"]) == 0
    assert (tmp_path / "model.onnx").is_file()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, b"not a checkpoint at all"])
def test_bad_checkpoint_is_a_clear_error_and_nonzero_exit(tmp_path, capsys, content):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    assert export_main([str(path), "-o", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_verification_failure_exits_nonzero_and_says_by_how_much(
    r18_checkpoint, tmp_path, monkeypatch, capsys
):
    import rd_export.verify as verify

    monkeypatch.setitem(verify.TOLERANCE, "fp32", 1e-12)
    assert export_main([str(r18_checkpoint), "-o", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert "disagrees with the torch model by" in err and "tolerance 1e-12" in err
