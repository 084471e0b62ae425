"""Score normalization and maps back to the frame."""

import math

import numpy as np
import pytest

from rd_edge.core.postprocess import normalize_score, resize_map, score_scale


def test_normalized_score_is_one_half_at_the_threshold_and_nine_to_one_a_scale_above():
    assert float(normalize_score(2.0, 2.0, 0.5)) == pytest.approx(0.5)
    assert float(normalize_score(2.5, 2.0, 0.5)) == pytest.approx(0.9)
    assert float(normalize_score(1.5, 2.0, 0.5)) == pytest.approx(0.1)
    far = normalize_score(np.array([-1e9, 1e9]), 0.0, 1.0)
    assert far.tolist() == [0.0, 1.0]  # no overflow warnings, clipped


@pytest.mark.parametrize(
    "stats, scale",
    [
        ({"std": 0.1, "min": 0, "max": 1}, 0.3),
        ({"std": 0.0, "min": 1, "max": 3}, 2.0),
        (None, 1.0),
        ({"std": math.nan}, 1.0),
    ],
)
def test_scale_is_three_std_else_the_range_else_one(stats, scale):
    assert score_scale(stats) == pytest.approx(scale)


def test_maps_go_back_to_the_frame_size_bilinear():
    amap = np.array([[0, 1], [2, 3]], np.float32)
    assert resize_map(amap, (2, 2)) is amap
    big = resize_map(amap, (4, 6))
    assert big.shape == (4, 6) and big.min() >= 0 and big.max() <= 3 and big[0, 0] == 0 and big[-1, -1] == 3
