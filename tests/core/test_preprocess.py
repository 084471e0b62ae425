"""The input convention: BGR uint8 -> resize by the model's rule -> RGB float32 CHW in [0, 1]."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from rd_edge.core.preprocess import (
    RESIZE_AREA_LINEAR,
    RESIZE_LINEAR,
    preprocess_bgr,
    preprocess_for,
    resize_interpolation,
)


def test_channels_are_reversed_scaled_and_transposed_exactly():
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 255  # B, G, R
    out = preprocess_bgr(frame, (4, 6), resize=RESIZE_LINEAR)
    assert out.dtype == np.float32 and out.shape == (3, 4, 6)
    np.testing.assert_array_equal(out[:, 0, 0], np.float32([255, 20, 10]) * np.float32(1 / 255))


def test_the_rule_picks_the_interpolation():
    assert resize_interpolation((100, 100), (10, 10), RESIZE_AREA_LINEAR) == cv2.INTER_AREA
    assert resize_interpolation((100, 100), (10, 10), RESIZE_LINEAR) == cv2.INTER_LINEAR
    assert (
        resize_interpolation((5, 100), (10, 10), RESIZE_AREA_LINEAR) == cv2.INTER_LINEAR
    )  # not both smaller
    with pytest.raises(ValueError, match="unknown resize rule 'nearest'"):
        resize_interpolation((100, 100), (10, 10), "nearest")


def test_the_rule_is_required_and_preprocess_for_takes_the_models():
    frame = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    with pytest.raises(TypeError):
        preprocess_bgr(frame, (24, 32))  # no default: every caller names the model's rule
    for rule in (RESIZE_LINEAR, RESIZE_AREA_LINEAR):
        model = SimpleNamespace(image_size=[24, 32], resize=rule)
        np.testing.assert_array_equal(
            preprocess_for(model, frame), preprocess_bgr(frame, (24, 32), resize=rule)
        )


def test_out_buffer_is_filled_in_place():
    frame = np.full((8, 8, 3), 51, np.uint8)
    batch = np.zeros((2, 3, 8, 8), np.float32)
    preprocess_bgr(frame, (8, 8), out=batch[1], resize=RESIZE_LINEAR)
    assert np.all(batch[0] == 0) and np.allclose(batch[1], 0.2)
