"""CPU preprocessing, the reference for every other path (CUDA kernel, C++ example).

uint8 BGR [H,W,3] -> resize to the model size with cv2.INTER_LINEAR (half-pixel centres,
edge-clamped, no antialiasing) -> RGB -> /255 -> float32 CHW.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def preprocess_bgr(frame: np.ndarray, size: Tuple[int, int], out: Optional[np.ndarray] = None) -> np.ndarray:
    """One uint8 BGR frame -> float32 [3,H,W] RGB in [0,1], written into ``out`` when given.

    ``size`` is the model's (H, W). ``out`` is a reused [3,H,W] float32 buffer (e.g. a slice of
    the batch tensor) so the hot path does not allocate.
    """
    import cv2

    h, w = size
    if frame.shape[:2] != (h, w):
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    if out is None:
        out = np.empty((3, h, w), dtype=np.float32)
    # BGR -> RGB by reversed channel order while transposing HWC -> CHW, then scale in place.
    np.multiply(frame.transpose(2, 0, 1)[::-1], np.float32(1.0 / 255.0), out=out, casting="unsafe")
    return out
