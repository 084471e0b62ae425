"""Postprocessing shared by every backend: map back to the frame, normalize, threshold, overlay."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def resize_map(amap: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """[h,w] float map -> [H,W] at the frame's own size (bilinear)."""
    import cv2

    h, w = size_hw
    if amap.shape == (h, w):
        return amap
    return cv2.resize(amap, (w, h), interpolation=cv2.INTER_LINEAR)


def normalize_score(score, threshold: float, min_normal: float, max_normal: float):
    """Map so the threshold sits at 0.5, clipped to [0,1] (anomalib's convention).

    ((score - threshold) / (max_normal - min_normal)) + 0.5; a degenerate range falls back to 1.
    """
    span = max_normal - min_normal
    if not np.isfinite(span) or span <= 0:
        span = 1.0
    return np.clip((np.asarray(score, dtype=np.float64) - threshold) / span + 0.5, 0.0, 1.0)


def heatmap_overlay(frame_bgr: np.ndarray, amap: np.ndarray, vmin: float, vmax: float,
                    alpha: float = 0.5, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Colour the map (JET, vmin..vmax) over the frame; outline ``mask`` (bool) in white if given."""
    import cv2

    amap = resize_map(amap, frame_bgr.shape[:2])
    scaled = np.clip((amap - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    out = cv2.addWeighted(frame_bgr, 1.0 - alpha, heat, alpha, 0.0)
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    return out
