"""The benchmark's input: deterministic uint8 BGR frames at a camera size (default 640x480)."""

from __future__ import annotations

import hashlib
from typing import List, Sequence, Tuple

import numpy as np

DEFAULT_FRAME_SIZE = (640, 480)  # (W, H), a VGA camera


def make_frames(count: int, size: Tuple[int, int] = DEFAULT_FRAME_SIZE, seed: int = 0) -> List[np.ndarray]:
    """``count`` textured frames [H,W,3] uint8 BGR; the same on every call with the same seed.

    Rendered with the demo dataset's texture generator (a square render, centre-cropped), so
    the frames look like the parts the model is trained on rather than white noise; that keeps
    int8 calibration ranges realistic. Latency itself does not depend on the content.
    """
    from rd_edge.data import render_demo_image

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    width, height = size
    side = max(width, height)
    top, left = (side - height) // 2, (side - width) // 2
    frames = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        square = render_demo_image("weave", "good", side, rng).image
        frames.append(np.ascontiguousarray(square[top : top + height, left : left + width]))
    return frames


def frames_digest(frames: Sequence[np.ndarray]) -> str:
    """sha256 over the frames' bytes: proves every worker measured the same input."""
    h = hashlib.sha256()
    for frame in frames:
        h.update(np.ascontiguousarray(frame).tobytes())
    return h.hexdigest()


def parse_frame_size(text: str) -> Tuple[int, int]:
    """ "640x480" -> (640, 480); ValueError with the expected form otherwise."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"frame size {text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if width < 1 or height < 1:
        raise ValueError(f"frame size {text!r}: width and height must be positive")
    return width, height
