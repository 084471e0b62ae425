"""Threshold precedence and the typed 'no threshold' error, for the Detector, rd-serve's repository
and the remote detector alike."""

import math

import pytest

from rd_edge.core.errors import ConfigError
from rd_edge.core.onnx_props import read_onnx_metadata
from rd_edge.core.thresholds import NoThresholdError, Thresholds, ThresholdValueError, thresholds_path
from rd_edge.runtime import Detector
from rd_edge.runtime.threshold_precedence import resolve_thresholds
from rd_edge.runtime.triton_repo import graph_thresholds


def test_a_model_without_any_threshold_is_a_typed_error_and_serves_without_one(make_model, metadata_factory):
    model = make_model(metadata=metadata_factory(threshold=None))
    meta = read_onnx_metadata(model)
    with pytest.raises(NoThresholdError, match=r"no threshold.*--threshold"):
        resolve_thresholds(model, meta)
    with pytest.raises(NoThresholdError):
        Detector(model, backend="onnxruntime")
    assert graph_thresholds(model, meta) is None  # rd-serve: clients bring their own
    with Detector(model, backend="onnxruntime", threshold=0.2) as det:
        assert (det.threshold, det.pixel_threshold) == (0.2, 0.2)
        assert det.thresholds.image_threshold == det.thresholds.image == 0.2


def test_a_broken_thresholds_file_is_not_taken_for_no_threshold(make_model, metadata_factory):
    model = make_model(metadata=metadata_factory(threshold=None))
    thresholds_path(model).write_text(
        '{"format": "rd_edge.thresholds", "format_version": 1, "image_threshold": "x"}'
    )
    with pytest.raises(ThresholdValueError, match="image_threshold must be a finite number"):
        graph_thresholds(model, read_onnx_metadata(model))


def test_precedence_names_each_source(make_model):
    model = make_model()
    Thresholds(0.7, None).write(thresholds_path(model))
    got = resolve_thresholds(model, read_onnx_metadata(model), pixel_threshold=0.1)
    assert (got.image_threshold, got.image_source) == (0.7, str(thresholds_path(model)))
    assert (got.pixel_threshold, got.pixel_source) == (0.1, "argument")


@pytest.mark.parametrize("kwargs", [{"threshold": math.nan}, {"pixel_threshold": "0.5"}, {"threshold": True}])
def test_remote_detector_validates_thresholds_as_the_detector_does(kwargs, make_model):
    pytest.importorskip("tritonclient")
    from rd_edge.runtime.client import RemoteDetector

    with pytest.raises(ConfigError, match="must be a finite number") as remote:
        RemoteDetector("http://127.0.0.1:9", **kwargs)  # refused before any connection is tried
    with pytest.raises(ConfigError, match="must be a finite number") as local:
        Detector(make_model(), backend="onnxruntime", **kwargs)
    assert str(remote.value) == str(local.value)


def test_pixel_and_image_thresholds_follow_argument_then_file_then_metadata(tmp_path):
    """Property (issue 28): for every combination of argument, MODEL.thresholds.json and metadata
    values (each present or not), each threshold is the first one present; the pixel threshold
    falls back to the image threshold only when no pixel threshold exists anywhere."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    from rd_edge.core.metadata import ModelMetadata

    model = tmp_path / "model.onnx"
    model.write_bytes(b"")  # only its path matters here
    maybe = st.one_of(st.none(), st.floats(0.01, 5.0))

    @hypothesis.settings(max_examples=100, deadline=None, database=None)
    @hypothesis.given(arg=maybe, arg_px=maybe, file=maybe, file_px=maybe, meta=maybe, meta_px=maybe)
    def check(arg, arg_px, file, file_px, meta, meta_px):
        beside = thresholds_path(model)
        beside.unlink(missing_ok=True)
        if file is not None:
            Thresholds(file, file_px).write(beside)
        md = ModelMetadata(
            backbone="resnet18",
            image_size=[64, 64],
            threshold=meta,
            score_stats=None,
            checkpoint_sha256="0" * 64,
            exporter_version="test",
            pixel_threshold=meta_px,
        )
        images = [(arg, "argument"), (file, str(beside)), (meta, "metadata")]
        image = next(((v, s) for v, s in images if v is not None), None)
        if image is None:
            with pytest.raises(NoThresholdError):
                resolve_thresholds(model, md, arg, arg_px)
            return
        pixels = [
            (arg_px, "argument"),
            (file_px if file is not None else None, str(beside)),
            (meta_px, "metadata"),
            (image[0], "image threshold"),
        ]
        pixel = next((v, s) for v, s in pixels if v is not None)
        got = resolve_thresholds(model, md, arg, arg_px)
        assert (got.image_threshold, got.image_source) == image
        assert (got.pixel_threshold, got.pixel_source) == pixel

    check()


def test_a_recalibrated_pixel_threshold_beats_the_metadata(tmp_path):
    """rd-calibrate wrote pixel 0.2 beside a model whose metadata says 0.5 (image) and 0.7 (pixel)."""
    from rd_edge.core.metadata import ModelMetadata

    model = tmp_path / "model.onnx"
    md = ModelMetadata(
        backbone="resnet18",
        image_size=[64, 64],
        threshold=0.5,
        score_stats=None,
        checkpoint_sha256="0" * 64,
        exporter_version="test",
        pixel_threshold=0.7,
    )
    assert (resolve_thresholds(model, md).image_threshold, resolve_thresholds(model, md).pixel_threshold) == (
        0.5,
        0.7,
    )
    Thresholds(0.3, 0.2).write(thresholds_path(model))
    got = resolve_thresholds(model, md)
    assert (got.image_threshold, got.pixel_threshold, got.pixel_source) == (
        0.3,
        0.2,
        str(thresholds_path(model)),
    )
