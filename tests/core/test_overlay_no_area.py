"""An NG overlay with no pixel above the pixel threshold says so on the image ("no area"), so an
empty outline is not mistaken for a missing region; OK overlays and NG ones with a region don't."""

import numpy as np

from rd_edge.core.postprocess import render_overlay


def corner(overlay, u=1):
    return overlay[32 * u + 4 * u : 32 * u + 4 * u + 14 * u, 4 * u : 4 * u + 84 * u]  # below the band


def test_ng_without_region_says_no_area():
    frame = np.full((64, 64, 3), 80, np.uint8)
    amap = np.full((64, 64), 0.5, np.float32)
    amap[40:50, 40:50] = 0.9  # the peak: 0.9
    plain = render_overlay(
        frame, amap, 0.9, threshold=0.8, scale=1.0, pixel_threshold=0.85
    )  # region 0.9 > 0.85
    empty = render_overlay(frame, amap, 0.9, threshold=0.8, scale=1.0, pixel_threshold=0.95)  # nothing > 0.95
    ok = render_overlay(
        frame, amap, 0.7, threshold=0.8, scale=1.0, pixel_threshold=0.95
    )  # OK: nothing to say
    white = lambda img: int((corner(img) == 255).all(axis=2).sum())  # noqa: E731
    assert white(empty) > 50 and white(plain) == 0 and white(ok) == 0
