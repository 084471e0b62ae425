"""The ONNX Runtime backend: providers, options, metadata and graph validation."""

import sys

import numpy as np
import onnxruntime as ort
import pytest

from rd_edge.core.errors import BackendError, MetadataError
from rd_edge.runtime import load_runner
from rd_edge.runtime.backends.onnxruntime import OnnxRuntimeRunner, expand_providers


def test_runner_matches_a_plain_session_and_reads_the_metadata(tiny_onnx):
    x = np.random.default_rng(0).random((3, 3, 24, 32), dtype=np.float32)
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    want_map, want_score = session.run(["anomaly_map", "score"], {"image": x})
    with load_runner(tiny_onnx) as runner:
        assert isinstance(runner, OnnxRuntimeRunner) and runner.name == "ort"
        assert runner.input_names == ("image",) and runner.output_names == ("anomaly_map", "score")
        assert runner.metadata.image_size == [24, 32] and runner.metadata.threshold == 0.3
        assert runner.max_batch is None  # dynamic batch
        assert runner.providers == ["CPUExecutionProvider"]
        out = runner.infer({"image": x})
    np.testing.assert_array_equal(out["anomaly_map"], want_map)
    np.testing.assert_array_equal(out["score"], want_score)
    assert out["anomaly_map"].shape == (3, 1, 24, 32) and out["score"].shape == (3,)


def test_threads_option_reaches_the_session(tiny_onnx):
    with load_runner(tiny_onnx, threads=1) as runner:
        assert runner.session.get_session_options().intra_op_num_threads == 1


def test_provider_shorthands_expand_and_keep_cpu_as_fallback():
    assert expand_providers(None) == ["CPUExecutionProvider"]
    assert expand_providers(None, device="cuda:1") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert expand_providers("tensorrt,cuda") == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert expand_providers(["CPUExecutionProvider", "cpu"]) == ["CPUExecutionProvider"]


def test_unavailable_provider_lists_the_available_ones(tiny_onnx):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA provider is available here")
    available = ort.get_available_providers()
    with pytest.raises(
        BackendError,
        match=r"\['CUDAExecutionProvider'\] are not available here; "
        r"available: \[.*'CPUExecutionProvider'.*pip install '\.\[gpu\]'",
    ) as err:
        load_runner(tiny_onnx, providers=["cuda"])
    assert str(available) in str(err.value)


def test_tensorrt_options_need_the_tensorrt_provider(tiny_onnx):
    with pytest.raises(BackendError, match="fp16 and cache_dir configure the TensorRT execution provider"):
        load_runner(tiny_onnx, fp16=True)


def test_unknown_option_and_bad_device_are_refused(tiny_onnx):
    with pytest.raises(
        BackendError, match=r"does not take option\(s\) \['precison'\]; it accepts: providers"
    ):
        load_runner(tiny_onnx, precison="fp16")
    with pytest.raises(BackendError, match="device 'gpu'"):
        load_runner(tiny_onnx, device="gpu")


def test_model_without_metadata(make_model):
    with pytest.raises(MetadataError, match=r"no 'rd_edge' metadata; it was not exported by rd-export"):
        load_runner(make_model(metadata=None))


def test_metadata_that_is_not_json(make_model):
    with pytest.raises(MetadataError, match="not valid JSON"):
        load_runner(make_model(metadata="{broken"))


def test_metadata_image_size_must_match_the_graph(make_model, metadata_factory):
    path = make_model(metadata=metadata_factory(image_size=(32, 32)))  # graph is 24x32
    with pytest.raises(
        MetadataError, match=r"shape \['N', 3, 24, 32\], but the metadata says \[N, 3, 32, 32\]"
    ):
        load_runner(path)


def test_input_name_must_be_image(make_model):
    with pytest.raises(MetadataError, match=r"expected one input named 'image', found \['pixels'\]"):
        load_runner(make_model(input_name="pixels"))


def test_corrupt_onnx_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(BackendError, match=r"ONNX Runtime cannot load .*broken\.onnx"):
        load_runner(path)


def test_wrong_input_shape_is_a_backend_error(tiny_onnx):
    with load_runner(tiny_onnx) as runner:
        with pytest.raises(
            BackendError,
            match=r"input shape \(1, 3, 8, 8\) does not fit the model: "
            r"expected \[1\.\.N, 3, 24, 32\]",
        ):
            runner.infer({"image": np.zeros((1, 3, 8, 8), np.float32)})


def test_missing_onnxruntime_names_the_extra(tiny_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(BackendError, match=r"pip install .\.\[cpu\]."):
        load_runner(tiny_onnx)
