"""The overlay and the graded score every tool shares (rd_edge.core.postprocess): what the operator
sees must say the verdict, carry the colour bar and outline what was found and what was expected."""

import numpy as np
import pytest

from rd_edge.core.postprocess import (
    NG_BGR,
    OK_BGR,
    display_factor,
    jet_lut,
    normalize_score,
    render_overlay,
    score_scale,
)

THRESHOLD, SCALE = 1.0, 0.3


def blob_map(h, w, peak, centre, radius=6.0):
    """A smooth bump of height ``peak`` above a 0.5 floor at ``centre`` (row, col)."""
    yy, xx = np.mgrid[:h, :w]
    d2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    return (0.5 + peak * np.exp(-d2 / (2 * radius**2))).astype(np.float32)


def grey(h, w):
    return np.full((h, w, 3), 128, np.uint8)


def test_ng_overlay_shows_verdict_colour_bar_marker_and_outlines():
    h, w = 60, 80  # enlarged by 4 to 320 px wide: band unit 1
    amap = blob_map(h, w, 1.0, (20, 30))
    gt = np.zeros((h, w), bool)
    gt[40:50, 55:70] = True  # a ground-truth region the model missed
    score = float(amap.max())
    out = render_overlay(grey(h, w), amap, score, THRESHOLD, SCALE, ground_truth=gt)
    f = display_factor(w)
    assert f == 4 and out.shape == (32 + h * f, w * f, 3)
    band, image = out[:32], out[32:]
    # Verdict box: NG red, with white text pixels inside.
    box = band[3:21, 4:32].reshape(-1, 3)
    assert (box == NG_BGR).all(axis=1).mean() > 0.5 and (box == 255).all(axis=1).any()
    # Colour bar: the JET ramp from blue (left, 0) to dark red (right, 1), black tick at 0.5.
    bar = band[26, 4 : w * f - 4]
    assert tuple(bar[0]) == tuple(jet_lut()[0]) and tuple(bar[-1]) == tuple(jet_lut()[255])
    assert bar[0][0] > 100 and bar[0][2] == 0 and bar[-1][2] > 100 and bar[-1][0] == 0
    assert tuple(band[23, 4 + (len(bar) - 1) // 2]) == (0, 0, 0)
    # White marker at this image's normalized score.
    n = float(normalize_score(score, THRESHOLD, SCALE))
    mark = 4 + int(n * (len(bar) - 1) + 0.5)
    assert tuple(band[22, mark]) == (255, 255, 255) and tuple(band[22, 4]) != (255, 255, 255)
    # Prediction outlined in white around the blob, ground truth in magenta, nothing white far away.
    white = (image == 255).all(axis=2)
    magenta = (image == (255, 0, 255)).all(axis=2)
    rows, cols = np.nonzero(white)
    assert white.any() and abs(rows.mean() / f - 20) < 3 and abs(cols.mean() / f - 30) < 3
    assert magenta[40 * f : 50 * f, 55 * f : 70 * f].any() and not magenta[: 35 * f].any()
    # Heat: the blob's centre is red-ish (above the threshold), the background blue-ish.
    assert image[20 * f, 30 * f, 2] > image[20 * f, 30 * f, 0]
    assert image[5 * f, 5 * f, 0] > image[5 * f, 5 * f, 2]


def test_ok_overlay_is_green_without_a_predicted_outline():
    h, w = 300, 400  # no enlargement, unit 1
    amap = blob_map(h, w, 0.2, (100, 100))  # peak 0.7 < threshold
    out = render_overlay(grey(h, w), amap, float(amap.max()), THRESHOLD, SCALE)
    assert out.shape == (32 + h, w, 3)
    assert (out[3:21, 4:32].reshape(-1, 3) == OK_BGR).all(axis=1).mean() > 0.5
    assert not (out[32:] == 255).all(axis=2).any()  # no pixel above the pixel threshold: no outline


def test_pixel_threshold_moves_the_outline_not_the_verdict():
    h, w = 64, 64
    amap = blob_map(h, w, 0.4, (32, 32))  # peak 0.9: below the image threshold 1.0
    low = render_overlay(grey(h, w), amap, float(amap.max()), THRESHOLD, SCALE, pixel_threshold=0.7)
    high = render_overlay(grey(h, w), amap, float(amap.max()), THRESHOLD, SCALE)
    assert (low[32:] == 255).all(axis=2).any() and not (high[32:] == 255).all(axis=2).any()
    assert np.array_equal(low[:32], high[:32])  # same verdict band: OK


def test_normalized_score_grades_around_the_threshold():
    stats = {"min": 0.9, "max": 1.1, "mean": 1.0, "std": 0.05, "count": 20}
    scale = score_scale(stats)
    assert scale == pytest.approx(0.15)
    threshold = 1.0 + scale  # mean + 3 std
    assert float(normalize_score(threshold, threshold, scale)) == 0.5
    assert float(normalize_score(1.0, threshold, scale)) == pytest.approx(0.1)  # a typical good part
    assert float(normalize_score(threshold + scale, threshold, scale)) == pytest.approx(0.9)
    values = normalize_score(np.linspace(0.5, 2.5, 41), threshold, scale)
    assert np.all(np.diff(values) > 0) and np.all((values > 0) & (values < 1))  # graded, never 0/1 here
    assert score_scale({"min": 1.0, "max": 1.2}) == pytest.approx(0.2) and score_scale(None) == 1.0
