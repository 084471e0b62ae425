"""Postprocessing shared by every backend: map back to the frame, grade the score, draw the overlay.

One visual language for ``rd-eval --save-maps``, ``rd-infer --out/--show`` and the C++ example
(``cpp_examples/src/postprocess.cpp`` draws the same pixels; tests/cpp checks it):

**normalized_score** (documented in docs/overlay.md) is a logistic curve on the raw score::

    normalized = 1 / (1 + 9 ** (-(score - threshold) / scale)),   scale = 3 * std

where ``std`` is the standard deviation of the held-out normal images' scores (fallback:
max - min of them; 1.0 without statistics). The threshold sits at 0.5; every ``scale`` above
it multiplies the odds by 9 (threshold + 3 std -> 0.9, + 6 std -> 0.988), every ``scale``
below divides them (with the default threshold mean + 3 std, a typical good part scores 0.1).
It grades over the whole range and reaches exactly 0 or 1 only ~50 std away from the threshold.

**Overlay** (``render_overlay``): frames narrower than 256 px are enlarged by a whole factor
(nearest neighbour); every pixel of the map is coloured on the *same* scale as the score
(centred on the pixel threshold), JET from blue (0) through green (0.5, the threshold) to red
(1), blended 50/50 with the frame; the predicted region (map > pixel threshold) is outlined in
white, the ground truth (where known) in magenta. A band above the image holds the verdict
(OK on green / NG on red), the normalized and raw score (our 5x7 bitmap font, identical with
any OpenCV), and the colour bar 0..1 with a black tick at the threshold (0.5) and a white marker
at this image's normalized score.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Tuple

import numpy as np

GRADE_ODDS = 9.0  # the odds of "anomalous" multiply by this per `scale` above the threshold
_LOG_ODDS = math.log(GRADE_ODDS)
SCALE_SIGMAS = 3.0  # scale = 3 std of the held-out normal scores
MIN_DISPLAY_WIDTH = 256  # narrower frames are enlarged by a whole factor so the text stays legible
GROUND_TRUTH_BGR = (255, 0, 255)  # magenta
PREDICTION_BGR = (255, 255, 255)  # white
OK_BGR = (0, 150, 0)
NG_BGR = (0, 0, 210)
BAND_BGR = (40, 40, 40)


def resize_map(amap: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """[h,w] float map -> [H,W] at the frame's own size (bilinear)."""
    import cv2

    h, w = size_hw
    if amap.shape == (h, w):
        return amap
    return cv2.resize(amap, (w, h), interpolation=cv2.INTER_LINEAR)


def score_scale(stats: Optional[Mapping[str, float]]) -> float:
    """The raw-score distance that takes normalized_score from 0.5 to 0.9: 3 std of the held-out
    normal scores; max - min of them when std is missing or 0; 1.0 without statistics."""
    stats = stats or {}
    for value in (
        SCALE_SIGMAS * float(stats.get("std", float("nan"))),
        float(stats.get("max", float("nan"))) - float(stats.get("min", float("nan"))),
    ):
        if math.isfinite(value) and value > 0:
            return value
    return 1.0


def normalize_score(score, threshold: float, scale: float):
    """``1 / (1 + 9 ** (-(score - threshold) / scale))`` in float64: 0.5 at the threshold, graded
    over [0, 1] (see the module docstring). Scalars give a 0-d array; use float() on it."""
    z = (np.asarray(score, dtype=np.float64) - float(threshold)) / float(scale)
    with np.errstate(over="ignore"):  # far below the threshold: exp -> inf, result 0, as intended
        return np.clip(1.0 / (1.0 + np.exp(-_LOG_ODDS * z)), 0.0, 1.0)


def jet_lut() -> np.ndarray:
    """[256,3] uint8 BGR: the classic JET ramp written out (not cv2.COLORMAP_JET, whose table
    changed across OpenCV versions), so Python and C++ colour alike with any OpenCV."""
    x = np.arange(256, dtype=np.float64) / 255.0
    channel = lambda centre: np.clip(1.5 - np.abs(4.0 * x - centre), 0.0, 1.0)  # noqa: E731
    rgb = np.stack([channel(3.0), channel(2.0), channel(1.0)], axis=1)
    return np.floor(rgb[:, ::-1] * 255.0 + 0.5).astype(np.uint8)


def colour_map(amap: np.ndarray, pixel_threshold: float, scale: float) -> np.ndarray:
    """[H,W] float map -> [H,W,3] uint8 BGR: each pixel normalized like the score (centred on the
    pixel threshold), index floor(255 * v) into the JET ramp."""
    levels = (normalize_score(amap, pixel_threshold, scale) * 255.0).astype(np.uint8)  # truncation
    return jet_lut()[levels]


def display_factor(width: int) -> int:
    """Whole enlargement factor for a frame ``width`` px wide (1 from MIN_DISPLAY_WIDTH up)."""
    return max(1, -(-MIN_DISPLAY_WIDTH // max(int(width), 1)))


def _enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    return image if factor == 1 else np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _outline(canvas: np.ndarray, mask: Optional[np.ndarray], factor: int, colour, thickness: int) -> None:
    import cv2

    if mask is None or not mask.any():
        return
    big = _enlarge(mask.astype(np.uint8), factor)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, colour, thickness, cv2.LINE_8)


_GLYPHS = {  # 5x7 bitmap glyphs: the same table as cpp_examples/src/postprocess.cpp
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "+": (".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."),
    "a": (".....", ".....", ".###.", "....#", ".####", "#...#", ".####"),
    "c": (".....", ".....", ".###.", "#....", "#....", "#...#", ".###."),
    "e": (".....", ".....", ".###.", "#...#", "#####", "#....", ".###."),
    "f": ("..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."),
    "i": ("..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."),
    "n": (".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"),
    "o": (".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."),
    "r": (".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."),
    "s": (".....", ".....", ".####", "#....", ".###.", "....#", "####."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
}


def text_width(text: str, k: int) -> int:
    """Width in px of ``text`` drawn by :func:`draw_text` with pixel size ``k``."""
    return max(len(text) * 6 * k - k, 0)


def draw_text(image: np.ndarray, text: str, x: int, y: int, k: int, colour) -> None:
    """Draw ``text`` with the 5x7 bitmap font, each font pixel a k x k block, top-left at (x, y).
    Our own font, not cv2.putText: its Hershey text differs between OpenCV 4 and 5, and the C++
    example must draw the same pixels with whatever OpenCV it is built against."""
    for i, char in enumerate(text):
        for row, bits in enumerate(_GLYPHS.get(char, ())):  # space and unknown characters: blank
            for col, bit in enumerate(bits):
                if bit == "#":
                    x0, y0 = x + (6 * i + col) * k, y + row * k
                    image[max(y0, 0) : max(y0 + k, 0), max(x0, 0) : max(x0 + k, 0)] = colour


def _band(width: int, unit: int, score: float, normalized: float, anomalous: bool) -> np.ndarray:
    """The legend band: verdict box, scores, colour bar with threshold tick and score marker."""
    u = unit
    band = np.empty((32 * u, width, 3), np.uint8)
    band[:] = BAND_BGR
    band[3 * u : 21 * u, 4 * u : 32 * u] = NG_BGR if anomalous else OK_BGR  # verdict box
    draw_text(band, "NG" if anomalous else "OK", 7 * u, 5 * u, 2 * u, (255, 255, 255))
    # Scores, in half size when they do not fit. %-formatting: the same digits as C++'s snprintf.
    text = "%.2f  score %.4g" % (normalized, score)
    k = 2 * u if text_width(text, 2 * u) <= width - 40 * u else u
    draw_text(band, text, 36 * u, 5 * u if k == 2 * u else 9 * u, k, (255, 255, 255))
    # Colour bar: columns x0..x1 (inclusive) sweep 0..1, rows 24u..28u.
    x0, x1 = 4 * u, width - 4 * u - 1
    n = x1 - x0 + 1
    levels = (np.arange(n, dtype=np.int64) * 255) // max(n - 1, 1)
    band[24 * u : 29 * u, x0 : x1 + 1] = jet_lut()[levels][None]
    mid = x0 + (n - 1) // 2  # the threshold: 0.5
    band[23 * u : 30 * u, mid : mid + max(1, u // 2)] = (0, 0, 0)
    mark = x0 + int(normalized * (n - 1) + 0.5)  # this image's normalized score
    band[22 * u : 31 * u, max(mark - u, 0) : mark + u + 1] = (255, 255, 255)
    return band


def render_overlay(
    frame_bgr: np.ndarray,
    amap: np.ndarray,
    score: float,
    threshold: float,
    scale: float,
    pixel_threshold: Optional[float] = None,
    ground_truth: Optional[np.ndarray] = None,
) -> np.ndarray:
    """The overlay every tool draws (see the module docstring).

    ``frame_bgr`` [H,W,3] uint8; ``amap`` float map (resized to H,W bilinear if needed); ``score``
    the image score; ``threshold`` the image threshold and ``scale`` from :func:`score_scale`;
    ``pixel_threshold`` outlines the predicted region (default: the image threshold);
    ``ground_truth`` [H,W] bool, outlined in magenta. Returns [32u + H*f, W*f, 3] uint8, where f is
    :func:`display_factor` and u = max(1, W*f // 256) the band's unit.
    """
    pixel_threshold = threshold if pixel_threshold is None else pixel_threshold
    amap = resize_map(np.asarray(amap, dtype=np.float32), frame_bgr.shape[:2])
    heat = colour_map(amap, pixel_threshold, scale)  # [H,W,3]
    # 50/50 blend in integers: (a + b + 1) // 2, the same in C++ whatever the OpenCV version.
    blended = ((frame_bgr.astype(np.uint16) + heat + 1) // 2).astype(np.uint8)
    factor = display_factor(frame_bgr.shape[1])
    canvas = np.ascontiguousarray(_enlarge(blended, factor))
    unit = max(1, canvas.shape[1] // 256)
    _outline(canvas, ground_truth, factor, GROUND_TRUTH_BGR, unit)
    region = amap > pixel_threshold
    _outline(canvas, region, factor, PREDICTION_BGR, unit)
    if float(score) > threshold and not region.any():  # NG with nothing to outline: said on the image
        draw_text(canvas, "no area", 4 * unit, 4 * unit, 2 * unit, (255, 255, 255))
    normalized = float(normalize_score(score, threshold, scale))
    band = _band(canvas.shape[1], unit, float(score), normalized, float(score) > threshold)
    return np.concatenate([band, canvas], axis=0)
