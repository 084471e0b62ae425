"""The Detector on a graph written by rd-export (not the stand-in): same numbers as ONNX Runtime."""

import cv2
import numpy as np
import pytest

from rd_edge.runtime import Detector


def test_detector_equals_direct_onnxruntime_on_the_exported_graph(r18_onnx, reference):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((64, 64), (100, 80), (40, 50))]
    expected = reference(r18_onnx, frames)
    with Detector(r18_onnx, batch_size=2) as det:
        assert det.input_size == (64, 64) and det.threshold == pytest.approx(1.2)
        preds = det.predict(frames)
    for i, (f, p) in enumerate(zip(frames, preds)):
        assert p.score == pytest.approx(float(expected["score"][i]), rel=1e-5, abs=1e-6)
        want = cv2.resize(
            expected["anomaly_map"][i, 0], (f.shape[1], f.shape[0]), interpolation=cv2.INTER_LINEAR
        )
        np.testing.assert_allclose(p.anomaly_map, want, rtol=1e-5, atol=1e-6)
        # helpers.SCORE_STATS: std 0.1 -> scale 0.3; threshold 1.2.
        assert p.normalized_score == pytest.approx(1.0 / (1.0 + 9.0 ** (-(p.score - 1.2) / 0.3)), rel=1e-9)
