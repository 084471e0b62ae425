"""Triton model repositories: rd-export --triton-repo and the Python-backend config of rd-serve.

Every config.pbtxt is parsed with Triton's own ModelConfig message (tritonclient ships it), so a
typo in the text format, an unknown field or a wrong enum fails here, not on the server.
"""

import numpy as np
import pytest

from rd_edge.core.metadata import ModelMetadata

text_format = pytest.importorskip("google.protobuf.text_format")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
ort = pytest.importorskip("onnxruntime")

from rd_edge.core.thresholds import Thresholds  # noqa: E402
from rd_edge.runtime.threshold_precedence import ResolvedThresholds  # noqa: E402
from rd_edge.runtime.triton_repo import TritonRepositoryError, detector_model_config, write_graph_repository  # noqa: E402


def _parse(path_or_text):
    text = path_or_text if isinstance(path_or_text, str) else path_or_text.read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _dims(tensor):
    return list(tensor.dims)


def test_export_cli_writes_an_onnxruntime_repository(tmp_path, make_model, metadata_factory):
    from rd_export.cli import main

    meta = metadata_factory()
    meta.extra = {"note": 'quotes " and \\ backslash, é, newline\n'}  # must survive text-format escaping
    model = make_model("weave.onnx", metadata=meta)
    # rd-calibrate's file beside the model wins over the metadata, as in the Detector
    Thresholds(image_threshold=0.25, pixel_threshold=0.2, checkpoint_sha256=meta.checkpoint_sha256).write(
        tmp_path / "thresholds.json"
    )
    repo = tmp_path / "repo"

    assert main([str(model), "--triton-repo", str(repo), "--max-batch", "4", "--instances", "2"]) == 0

    folder = repo / "rd_weave"
    assert (folder / "1" / "model.onnx").read_bytes() == model.read_bytes()
    config = _parse(folder / "config.pbtxt")
    assert config.name == "rd_weave" and config.backend == "onnxruntime"
    assert config.max_batch_size == 4
    assert config.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_AUTO, 2)
    ]
    # The names and shapes Triton will check against the graph: the graph's own, batch dim dropped.
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    graph_inputs = {i.name: i.shape[1:] for i in session.get_inputs()}
    assert {i.name: _dims(i) for i in config.input} == graph_inputs == {"image": [3, 24, 32]}
    assert {o.name for o in config.output} == {o.name for o in session.get_outputs()}
    outputs = {o.name: o for o in config.output}
    assert _dims(outputs["anomaly_map"]) == [1, 24, 32]
    assert _dims(outputs["score"]) == [1] and list(outputs["score"].reshape.shape) == []  # graph: [N]
    assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in list(config.input) + list(config.output))
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert ModelMetadata.from_json(params["rd_edge"]) == meta
    assert (
        (float(params["threshold"]), float(params["pixel_threshold"])) == (0.25, 0.2) != (meta.threshold, 0.2)
    )
    assert params["threshold_source"] == str(tmp_path / "thresholds.json")


def test_tensorrt_repository_config_parses(tmp_path, metadata_factory):
    """The writer needs no TensorRT: any plan file is copied as model.plan, the config says tensorrt."""
    plan = tmp_path / "weave.engine"
    plan.write_bytes(b"plan bytes")
    meta = metadata_factory(image_size=(48, 64))
    folder = write_graph_repository(plan, tmp_path / "repo", meta, "tensorrt", max_batch=16, instances=3)

    assert (folder / "1" / "model.plan").read_bytes() == b"plan bytes"
    config = _parse(folder / "config.pbtxt")
    assert config.backend == "tensorrt" and config.max_batch_size == 16
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_GPU, 3)
    ]
    assert {i.name: _dims(i) for i in config.input} == {"image": [3, 48, 64]}
    assert {o.name: _dims(o) for o in config.output} == {"anomaly_map": [1, 48, 64], "score": [1]}
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert (float(params["threshold"]), float(params["pixel_threshold"])) == (meta.threshold, meta.threshold)
    assert params["threshold_source"] == "metadata"


def test_detector_config_parses_with_the_documented_interface(metadata_factory):
    meta = metadata_factory()
    config = _parse(
        detector_model_config(
            meta,
            ResolvedThresholds(0.7, 0.6, "argument", "argument"),
            model_path="/models/m.onnx",
            max_batch=8,
            instances=2,
        )
    )
    assert config.name == "rd_edge" and config.backend == "python"
    inputs = {i.name: i for i in config.input}
    assert inputs["IMAGE"].data_type == model_config_pb2.TYPE_STRING and _dims(inputs["IMAGE"]) == [1]
    assert inputs["FRAME"].data_type == model_config_pb2.TYPE_UINT8 and _dims(inputs["FRAME"]) == [-1, -1, 3]
    assert inputs["IMAGE"].optional and inputs["FRAME"].optional  # a request carries one of them
    types = {o.name: o.data_type for o in config.output}
    assert types == {
        "SCORE": model_config_pb2.TYPE_FP32,
        "IS_ANOMALOUS": model_config_pb2.TYPE_BOOL,
        "NORMALIZED_SCORE": model_config_pb2.TYPE_FP32,
        "ANOMALY_MAP": model_config_pb2.TYPE_FP16,
    }
    assert config.parameters["threshold"].string_value == "0.7"
    assert config.parameters["pixel_threshold"].string_value == "0.6"
    assert config.parameters["model_file"].string_value == "/models/m.onnx"


def test_bad_requests_are_clear_errors(tmp_path, make_model, metadata_factory):
    from rd_export.cli import main

    meta = metadata_factory()
    with pytest.raises(TritonRepositoryError, match="unknown Triton backend 'openvino'"):
        write_graph_repository(tmp_path / "x.onnx", tmp_path / "repo", meta, "openvino")
    model = make_model("m.onnx")
    assert main([str(model), "--instances", "2"]) == 1  # --instances without --triton-repo
    (tmp_path / "thresholds.json").write_text("[1, 2]")
    assert main([str(model), "--triton-repo", str(tmp_path / "repo")]) == 1
    assert not (tmp_path / "repo").exists()  # checked before anything was written


def test_python_model_inputs_and_outputs_without_a_server():
    """The Python-backend model's request handling, on plain arrays (the server test covers Triton)."""
    import cv2
    import numpy as np

    from rd_edge.core.errors import ImageReadError
    from rd_edge.runtime.detector import Prediction
    from rd_edge.runtime.triton_python import frames_of, output_arrays

    frame = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    png = cv2.imencode(".png", frame)[1].tobytes()
    images = np.array([[png], [png]], dtype=object)  # IMAGE [B,1] BYTES
    assert [f.tolist() for f in frames_of(images, None)] == [frame.tolist()] * 2
    assert len(frames_of(None, np.stack([frame] * 3))) == 3
    with pytest.raises(ImageReadError, match=r"cannot decode IMAGE item 1 \(3 bytes\)"):
        frames_of(np.array([[png], [b"bad"]], dtype=object), None)
    with pytest.raises(ImageReadError, match="exactly one of IMAGE"):
        frames_of(images, np.stack([frame]))
    with pytest.raises(ImageReadError, match="exactly one of IMAGE.*neither"):
        frames_of(None, None)

    preds = [
        Prediction(1.5, 0.7, True, np.ones((5, 7), np.float32)),
        Prediction(0.5, 0.2, False, np.zeros((5, 7), np.float32)),
    ]
    arrays = output_arrays(preds, ["SCORE", "IS_ANOMALOUS", "ANOMALY_MAP"])
    assert sorted(arrays) == ["ANOMALY_MAP", "IS_ANOMALOUS", "SCORE"]  # NORMALIZED_SCORE not asked for
    assert arrays["SCORE"].tolist() == [[1.5], [0.5]] and arrays["IS_ANOMALOUS"].tolist() == [[True], [False]]
    assert arrays["ANOMALY_MAP"].dtype == np.float16 and arrays["ANOMALY_MAP"].shape == (2, 5, 7)
    preds[1].anomaly_map = np.zeros((6, 7), np.float32)
    with pytest.raises(ImageReadError, match="one size per request"):
        output_arrays(preds, ["ANOMALY_MAP"])


def test_rd_serve_no_serve_writes_the_python_backend_repository(tmp_path, make_model, capsys):
    """What the official container loads: config + model.py importing rd-edge's model; no server here."""
    from rd_edge.runtime.serve import main

    model = make_model("m.onnx")
    repo = tmp_path / "models"
    assert (
        main(
            [
                str(model),
                "--repository",
                str(repo),
                "--no-serve",
                "--max-batch",
                "4",
                "--threshold",
                "0.25",
                "--pixel-threshold",
                "0.125",
            ]
        )
        == 0
    )
    config = _parse(repo / "rd_edge" / "config.pbtxt")
    assert config.max_batch_size == 4 and config.parameters["threshold"].string_value == "0.25"
    assert config.parameters["pixel_threshold"].string_value == "0.125"
    # No host path in the config (any client reads it): the model is found through 1/model_dir.
    assert config.parameters["model_file"].string_value == "model_dir/m.onnx"
    assert str(tmp_path) not in (repo / "rd_edge" / "config.pbtxt").read_text()
    assert (repo / "rd_edge" / "1" / "model_dir" / "m.onnx").resolve() == model.resolve()
    assert (
        "from rd_edge.runtime.triton_python import TritonPythonModel"
        in (repo / "rd_edge" / "1" / "model.py").read_text()
    )
    assert main([str(tmp_path / "missing.onnx"), "--repository", str(repo), "--no-serve"]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_rd_serve_refuses_what_cannot_work(tmp_path, monkeypatch):
    import numpy as np

    from rd_edge.core.errors import BackendError
    from rd_edge.runtime.serve import TritonInstall, check_numpy_abi

    with pytest.raises(BackendError, match=r"not a Triton install with the Python backend.*make serve-env"):
        TritonInstall.find(str(tmp_path))  # no bin/tritonserver there
    bundled = TritonInstall(tmp_path / "tritonserver", tmp_path / "backends", stub=tmp_path / "stub")
    monkeypatch.setattr(np, "__version__", "2.1.0")
    with pytest.raises(BackendError, match=r"numpy 2\.1\.0.*numpy<2"):
        check_numpy_abi(bundled)
    monkeypatch.setattr(np, "__version__", "1.26.4")
    check_numpy_abi(bundled)
    check_numpy_abi(TritonInstall(tmp_path / "tritonserver", tmp_path / "backends"))  # a container's own stub


# --- external data travels with the graph; it never comes from outside (issue 21) --------------------


def _with_external_data(model, location):
    import onnx
    from onnx.external_data_helper import set_external_data

    proto = onnx.load(str(model))
    for tensor in proto.graph.initializer:
        if tensor.name == "weights":  # the conv weights; shape constants must stay inline for ORT
            set_external_data(tensor, location)
    onnx.save_model(proto, str(model))
    return model


def test_graph_repository_carries_the_external_data(make_model, tmp_path, metadata_factory):
    """rd-export --triton-repo wrote a repository without the data file of a model that has one."""
    from rd_edge.runtime import load_runner

    model = _with_external_data(make_model("ext.onnx"), "ext.weights")
    assert (model.parent / "ext.weights").is_file()
    folder = write_graph_repository(model, tmp_path / "repo", metadata_factory(), "onnxruntime")
    assert (folder / "1" / "ext.weights").read_bytes() == (model.parent / "ext.weights").read_bytes()
    frames = np.random.default_rng(0).random((1, 3, 24, 32), dtype=np.float32)
    with load_runner(model) as here, load_runner(folder / "1" / "model.onnx") as there:
        np.testing.assert_array_equal(
            there.infer({"image": frames})["score"], here.infer({"image": frames})["score"]
        )


def test_external_data_outside_the_model_folder_is_refused(make_model, tmp_path, metadata_factory):
    from rd_edge.core.errors import RdEdgeError
    from rd_edge.runtime import load_runner

    model = _with_external_data(make_model("inner.onnx"), "w.bin")
    text = model.read_bytes().replace(b"w.bin", b"../wb")  # same length: the protobuf stays valid
    (tmp_path / "wb").write_bytes((tmp_path / "w.bin").read_bytes())
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "m.onnx").write_bytes(text)
    with pytest.raises(TritonRepositoryError, match="outside its folder"):
        write_graph_repository(sub / "m.onnx", tmp_path / "repo", metadata_factory(), "onnxruntime")
    with pytest.raises(RdEdgeError):  # ONNX Runtime refuses it too (a good behaviour kept)
        load_runner(sub / "m.onnx")


def test_two_requests_in_one_execute_get_their_own_results(make_model):
    """Dynamic batching hands execute() several requests: each response carries the results of its
    own frames (a PNG request of two frames and a FRAME request of one, different content), equal
    to the Detector on those frames alone; a bad request in between gets only its own error."""
    from types import SimpleNamespace

    import cv2
    import numpy as np

    from rd_edge.runtime import Detector
    from rd_edge.runtime.triton_python import TritonPythonModel

    class Tensor:
        def __init__(self, name, value):
            self.name, self.value = name, np.asarray(value)

        def as_numpy(self):
            return self.value

    class Request:
        def __init__(self, names=(), **inputs):
            self.inputs, self.names = inputs, list(names)

        def requested_output_names(self):
            return self.names

    class TritonError(Exception):
        INVALID_ARG, INTERNAL = 3, 13

        def __init__(self, message, code=None):
            super().__init__(message)
            self.code = code

    pb = SimpleNamespace(
        Tensor=Tensor,
        TritonError=TritonError,
        get_input_tensor_by_name=lambda request, name: (
            Tensor(name, request.inputs[name]) if name in request.inputs else None
        ),
        InferenceResponse=lambda output_tensors=None, error=None: SimpleNamespace(
            outputs={t.name: t.value for t in output_tensors or []}, error=error
        ),
    )
    rng = np.random.default_rng(28)
    dark = rng.integers(0, 60, (2, 64, 64, 3), dtype=np.uint8)
    bright = rng.integers(180, 256, (1, 64, 64, 3), dtype=np.uint8)
    pngs = np.array([[cv2.imencode(".png", f)[1].tobytes()] for f in dark], dtype=object)
    model = TritonPythonModel()
    with Detector(make_model(), backend="onnxruntime", batch_size=4) as detector:
        model._pb, model.detector, model.max_pixels = pb, detector, None
        responses = model.execute(
            [
                Request(IMAGE=pngs),
                Request(IMAGE=np.array([[b"bad"]], dtype=object)),
                Request(["SCORE", "NORMALIZED_SCORE"], FRAME=bright),
            ]
        )
        alone = [[p.score for p in detector.predict(list(frames))] for frames in (dark, bright)]
    assert [r.error is None for r in responses] == [True, False, True]
    assert responses[1].error.code == TritonError.INVALID_ARG
    first, third = responses[0].outputs, responses[2].outputs
    np.testing.assert_allclose(first["SCORE"][:, 0], alone[0], rtol=1e-5)
    np.testing.assert_allclose(third["SCORE"][:, 0], alone[1], rtol=1e-5)
    assert sorted(third) == ["NORMALIZED_SCORE", "SCORE"] and first["ANOMALY_MAP"].shape == (2, 64, 64)
    assert abs(alone[0][0] - alone[1][0]) > 1e-6  # the two requests really differ


def test_frames_are_grouped_into_requests_of_one_size_in_order():
    """A FRAME tensor holds one [H,W,3] size: the client sends consecutive same-size frames together."""
    import numpy as np

    from rd_edge.runtime.client import _same_size_runs

    frames = [
        np.full(shape, i, np.uint8)
        for i, shape in enumerate([(4, 6, 3), (4, 6, 3), (6, 4, 3), (4, 6, 3), (5, 5, 3), (5, 5, 3)])
    ]
    runs = _same_size_runs(frames)
    assert [[int(f[0, 0, 0]) for f in run] for run in runs] == [[0, 1], [2], [3], [4, 5]]


def test_rd_serve_refuses_the_bundled_stub_under_numpy_2(tmp_path):
    """nvidia-pytriton's stub is built for numpy 1.x: with it and numpy 2 rd-serve stops with the fix."""
    import numpy as np

    from rd_edge.core.errors import BackendError
    from rd_edge.runtime.serve import TritonInstall, check_numpy_abi

    install = TritonInstall(tmp_path / "tritonserver", tmp_path / "backends", stub=tmp_path / "stub")
    if int(np.__version__.split(".")[0]) < 2:
        check_numpy_abi(install)  # numpy 1.x (rd-serve's own environment): fine
        return
    with pytest.raises(BackendError, match=r"numpy 2.*make serve-env"):
        check_numpy_abi(install)
    check_numpy_abi(TritonInstall(tmp_path / "tritonserver", tmp_path / "backends"))  # no bundled stub: fine
