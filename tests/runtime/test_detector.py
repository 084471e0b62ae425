"""Detector: same numbers as a direct ONNX Runtime call, batching, thresholds, frame sizes."""

import cv2
import numpy as np
import pytest

from rd_edge.core.errors import BackendError, ImageReadError, MetadataError
from rd_edge.core.images import to_bgr_uint8
from rd_edge.runtime import Detector, Prediction, load_runner


def frame(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# Upscaled, downscaled, exactly the model size, and one axis each way.
SIZES = [(12, 16), (48, 64), (24, 32), (100, 20), (7, 300)]


def test_scores_and_maps_equal_a_direct_onnxruntime_call(tiny_onnx, reference):
    frames = [frame(h, w, i) for i, (h, w) in enumerate(SIZES)]
    expected = reference(tiny_onnx, frames)
    with Detector(tiny_onnx) as det:
        for i, f in enumerate(frames):
            pred = det.predict(f)
            assert isinstance(pred, Prediction)
            assert pred.score == pytest.approx(float(expected["score"][i]), abs=1e-6)
            want = cv2.resize(
                expected["anomaly_map"][i, 0], (f.shape[1], f.shape[0]), interpolation=cv2.INTER_LINEAR
            )
            np.testing.assert_allclose(pred.anomaly_map, want, atol=1e-6)


def test_anomaly_map_comes_back_at_the_frames_own_size(tiny_onnx):
    with Detector(tiny_onnx) as det:
        for h, w in SIZES:
            pred = det.predict(frame(h, w, 0))
            assert pred.anomaly_map.shape == (h, w) and pred.anomaly_map.dtype == np.float32
            # Bilinear resampling only mixes model-map values, so it never exceeds the score.
            assert pred.anomaly_map.max() <= pred.score + 1e-6


def test_a_batch_equals_the_single_frame_results(tiny_onnx):
    frames = [frame(h, w, i) for i, (h, w) in enumerate(SIZES * 2)]  # 10 frames, batch 3: 3+3+3+1
    with Detector(tiny_onnx, batch_size=3) as det:
        batch = det.predict(frames)
        singles = [det.predict(f) for f in frames]
    assert len(batch) == len(frames)
    for b, s in zip(batch, singles):
        assert b.score == s.score and b.is_anomalous == s.is_anomalous
        np.testing.assert_array_equal(b.anomaly_map, s.anomaly_map)


def test_empty_list_gives_empty_list_and_4d_array_is_a_batch(tiny_onnx):
    stack = np.stack([frame(24, 32, 1), frame(24, 32, 2)])  # [N,H,W,3]
    with Detector(tiny_onnx) as det:
        assert det.predict([]) == []
        preds = det.predict(stack)
        assert [p.score for p in preds] == [det.predict(f).score for f in stack]


def test_the_backends_max_batch_caps_the_batch_size(make_model, reference):
    path = make_model(batch=2)  # static batch dimension 2
    frames = [frame(24, 32, i) for i in range(2)]
    with Detector(path, batch_size=8) as det:
        assert det.runner.max_batch == 2 and det.batch_size == 2
        preds = det.predict(frames)
    expected = reference(path, frames)["score"]
    np.testing.assert_allclose([p.score for p in preds], expected, atol=1e-6)


def test_threshold_from_metadata_and_caller_override(tiny_onnx):
    f = frame(24, 32, 3)
    with Detector(tiny_onnx) as det:
        pred = det.predict(f)
        assert det.threshold == pytest.approx(0.3)
        assert pred.is_anomalous == (pred.score > 0.3)
    for threshold, anomalous in ((pred.score - 1e-3, True), (pred.score + 1e-3, False)):
        with Detector(tiny_onnx, threshold=threshold) as det:
            other = det.predict(f)
        assert other.score == pred.score and other.is_anomalous is anomalous
    with Detector(tiny_onnx, threshold=pred.score) as det:
        assert det.predict(f).normalized_score == pytest.approx(0.5)  # the threshold sits at 0.5


def test_normalized_score_follows_the_documented_formula(tiny_onnx):
    # tiny metadata: threshold 0.3, std 0.05 -> scale 3 std = 0.15; 1 / (1 + 9^-((s - t) / scale)).
    with Detector(tiny_onnx) as det:
        grades = []
        for seed in range(5):
            pred = det.predict(frame(30, 30, seed) // (seed + 1))
            expected = 1.0 / (1.0 + 9.0 ** (-(pred.score - 0.3) / 0.15))
            assert pred.normalized_score == pytest.approx(expected, rel=1e-9)
            grades.append(pred.normalized_score)
        assert all(0.0 < g < 1.0 for g in grades) and len(set(grades)) == 5  # graded, not 0/1


def test_model_without_threshold_needs_one_from_the_caller(make_model, metadata_factory):
    path = make_model(metadata=metadata_factory(threshold=None))
    with pytest.raises(MetadataError, match=r"no threshold.*threshold=T.*--threshold"):
        Detector(path)
    with Detector(path, threshold=0.2) as det:
        pred = det.predict(frame(24, 32, 0))
        assert det.threshold == 0.2 and pred.is_anomalous == (pred.score > 0.2)


def test_score_equal_to_the_threshold_is_ok_and_the_mask_agrees_with_the_verdict(tiny_onnx):
    # The verdict is score > threshold (anomalib's convention); the rd-infer mask is
    # map > threshold, so at the model's size the mask is empty exactly when the verdict is OK.
    frames = [frame(24, 32, seed) for seed in range(6)]
    with Detector(tiny_onnx) as probe:
        scores = [p.score for p in probe.predict(frames)]
    for boundary in scores:
        with Detector(tiny_onnx, threshold=boundary) as det:
            for pred, score in zip(det.predict(frames), scores):
                assert pred.is_anomalous == (score > boundary), (score, boundary)
                mask = pred.anomaly_map > det.threshold
                assert mask.any() == pred.is_anomalous, (score, boundary)
            assert not [p for p in det.predict(frames) if p.score == boundary][0].is_anomalous


@pytest.mark.parametrize(
    "convert",
    [
        lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY),  # 2-D gray
        lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2BGRA),  # 4 channels
        lambda f: f.astype(np.uint16) * 257,  # 16-bit
        lambda f: f.astype(np.float32) / 255.0,  # float in [0, 1]
    ],
)
def test_odd_layouts_are_converted_like_to_bgr_uint8(tiny_onnx, convert):
    odd = convert(frame(20, 28, 5))
    with Detector(tiny_onnx) as det:
        got = det.predict(odd)
        want = det.predict(to_bgr_uint8(odd))
    assert got.score == want.score and got.anomaly_map.shape == (20, 28)


def test_unusable_frames_are_clear_errors(tiny_onnx):
    with Detector(tiny_onnx) as det:
        with pytest.raises(ImageReadError, match="unsupported image"):
            det.predict(np.zeros((4, 4, 2), np.uint8))
        with pytest.raises(ImageReadError, match="expected a numpy array"):
            det.predict(None)


def test_timings_and_properties(tiny_onnx):
    with Detector(tiny_onnx, batch_size=2) as det:
        preds = det.predict([frame(24, 32, 0), frame(50, 50, 1)])
        assert det.backend == "ort" and det.input_size == (24, 32)
        assert det.metadata.backbone == "tiny"
        assert det.preprocess_device == "cpu" and det.preprocess_fallback_reason is None
    for p in preds:
        assert set(p.timings) == {"preprocess_ms", "inference_ms", "postprocess_ms", "total_ms"}
        assert all(v >= 0 for v in p.timings.values())
        parts = p.timings["preprocess_ms"] + p.timings["inference_ms"] + p.timings["postprocess_ms"]
        assert p.timings["total_ms"] == pytest.approx(parts)


def test_detector_accepts_a_loaded_runner(tiny_onnx):
    runner = load_runner(tiny_onnx, providers=["cpu"], threads=1)
    with Detector(runner) as det:
        assert det.runner is runner and det.predict(frame(24, 32, 0)).anomaly_map.shape == (24, 32)


def test_missing_model_and_model_without_metadata(tmp_path, make_model):
    with pytest.raises(BackendError, match=r"cannot load model .*missing\.onnx: no such file"):
        Detector(tmp_path / "missing.onnx")
    with pytest.raises(MetadataError, match=r"no 'rd_edge' metadata.*rd-export"):
        Detector(make_model(metadata=None))


def test_cuda_preprocessing_requested_on_onnxruntime_is_an_error(tiny_onnx):
    with pytest.raises(BackendError, match="CUDA preprocessing was requested.*'ort' has no device input"):
        Detector(tiny_onnx, cuda_preprocess=True)


def test_batch_size_must_be_positive(tiny_onnx):
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Detector(tiny_onnx, batch_size=0)
