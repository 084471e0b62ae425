"""The backend registry: auto selection by suffix, names, aliases, custom backends."""

import importlib.util

import numpy as np
import pytest

from rd_edge.core.errors import BackendError
from rd_edge.core.metadata import ModelMetadata
from rd_edge.runtime import available_backends, load_runner
from rd_edge.runtime.backends import base
from rd_edge.runtime.backends.base import (
    Runner,
    register_backend,
    registered_backends,
    resolve_backend,
    why_unavailable,
)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("model.onnx", "ort"),
        ("MODEL.ONNX", "ort"),
        ("model.engine", "trt"),
        ("model.plan", "trt"),
        ("model.xml", "openvino"),
    ],
)
def test_auto_picks_the_backend_from_the_suffix(name, expected):
    assert resolve_backend(name) == expected


def test_unknown_suffix_lists_what_each_backend_claims():
    with pytest.raises(BackendError, match=r"model\.bin.*\.onnx -> ort.*\.engine, \.plan -> trt"):
        resolve_backend("model.bin")


def test_a_checkpoint_names_the_export_command():
    with pytest.raises(
        BackendError, match=r"training checkpoint.*export it first: rd-export model\.pt -o model\.onnx"
    ):
        resolve_backend("model.pt")


def test_explicit_names_and_aliases():
    assert resolve_backend("anything.bin", "ort") == "ort"
    assert resolve_backend("model.onnx", "onnxruntime") == "ort"
    assert resolve_backend("model.engine", "TensorRT") == "trt"
    assert resolve_backend("model.onnx", "openvino") == "openvino"
    with pytest.raises(
        BackendError, match=r"unknown backend 'tflite'; expected one of: auto, openvino, ort, trt"
    ):
        resolve_backend("model.onnx", "tflite")


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match=r"nope\.onnx: no such file; expected an \.onnx file"):
        load_runner(tmp_path / "nope.onnx")
    with pytest.raises(BackendError, match="a folder"):
        load_runner(tmp_path)


class _EchoRunner(Runner):
    name = "echo"
    input_names, output_names = ("image",), ("anomaly_map", "score")

    def __init__(self, path, gain):
        self.path, self.gain = path, gain
        self.metadata = ModelMetadata(
            backbone="resnet18",
            image_size=[4, 4],
            threshold=0.5,
            score_stats=None,
            checkpoint_sha256="0" * 64,
            exporter_version="test",
        )

    def infer_impl(self, feed):
        x = feed["image"]
        return {"anomaly_map": x[:, :1] * self.gain, "score": x.max(axis=(1, 2, 3)) * self.gain}


@pytest.fixture
def clean_registry(monkeypatch):
    """Register test backends without leaking them into other tests."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_ALIASES", dict(base._ALIASES))


def test_a_registered_backend_is_chosen_by_its_suffix_and_gets_the_options(tmp_path, clean_registry):
    @register_backend("echo", suffixes=(".echo",), probe=lambda: "needs nothing, but says no")
    def load_echo(path, gain=1.0):
        return _EchoRunner(path, gain)

    model = tmp_path / "m.echo"
    model.write_bytes(b"x")
    runner = load_runner(model, gain=2.0)
    assert isinstance(runner, _EchoRunner) and runner.gain == 2.0
    out = runner.infer({"image": np.ones((2, 3, 4, 4), np.float32)})
    np.testing.assert_array_equal(out["score"], [2.0, 2.0])
    with pytest.raises(BackendError, match=r"echo: input shape \(2, 3, 5, 4\) does not fit the model"):
        runner.infer({"image": np.ones((2, 3, 5, 4), np.float32)})  # checked once, in the base Runner
    assert "echo" in registered_backends() and "echo" not in available_backends()
    assert why_unavailable("echo") == "needs nothing, but says no"


def test_two_backends_cannot_claim_the_same_suffix(clean_registry):
    with pytest.raises(ValueError, match=r"\['.onnx'\] already belong to backend 'ort'"):
        register_backend("other", suffixes=(".onnx",))(lambda path: None)


def test_onnxruntime_is_available_here_and_tensorrt_says_why_not():
    assert "ort" in available_backends()
    if importlib.util.find_spec("tensorrt") is None:
        assert "trt" not in available_backends()
        assert "'.[gpu-cu12]'" in why_unavailable("trt") and "'.[gpu-cu13]'" in why_unavailable("trt")


def test_registering_a_backend_again_replaces_its_loader(clean_registry, tmp_path):
    """A plugin module imported twice (importlib.reload, a notebook cell run again) re-registers
    its backend under the same name and suffixes: the newest loader is the one used."""
    from rd_edge.runtime.backends.base import _REGISTRY

    def first(path, **options):
        return "first"

    def second(path, **options):
        return "second"

    register_backend("mine", suffixes=(".mine",))(first)
    register_backend("mine", suffixes=(".mine",))(second)
    assert _REGISTRY["mine"].loader is second and _REGISTRY["mine"].suffixes == (".mine",)
