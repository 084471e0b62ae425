"""CPU preprocessing, the reference for every other path (CUDA kernel, C++ example).

uint8 BGR [H,W,3] -> resize to the model size -> RGB -> /255 -> float32 CHW.

The resize follows the model's rule (``ModelMetadata.resize``, recorded at training):

- ``"area-shrink/linear-enlarge"`` (models trained since the rule was recorded): a frame at least
  as large as the model in both axes is shrunk by area averaging (cv2.INTER_AREA, closest to
  the antialiased resize of the RD4AD reference; bilinear sampling aliases fine texture); any
  other frame is resized with cv2.INTER_LINEAR.
- ``"linear"`` (older models): cv2.INTER_LINEAR always (half-pixel centres, edge-clamped, no
  antialiasing), which is what those models were trained with.

Every function takes the rule: there is no default here. New models get ``RESIZE_DEFAULT``
(rd_edge.core.metadata), old ones read "linear" from their metadata or checkpoint.
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, Tuple

import numpy as np

from .metadata import RESIZE_AREA_LINEAR, RESIZE_DEFAULT, RESIZE_LINEAR, RESIZE_RULES


def resize_interpolation(src_hw: Tuple[int, int], dst_hw: Tuple[int, int], rule: str) -> int:
    """The cv2 interpolation flag ``rule`` uses to resize from ``src_hw`` to ``dst_hw``."""
    import cv2

    if rule not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {rule!r}; expected one of {', '.join(RESIZE_RULES)}")
    shrinks = src_hw[0] >= dst_hw[0] and src_hw[1] >= dst_hw[1]
    return cv2.INTER_AREA if rule == RESIZE_AREA_LINEAR and shrinks else cv2.INTER_LINEAR


def resize_bgr(frame: np.ndarray, size: Tuple[int, int], rule: str) -> np.ndarray:
    """``frame`` resized to ``size`` (H, W) by ``rule``; the frame itself when it already fits."""
    import cv2

    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    return cv2.resize(frame, (w, h), interpolation=resize_interpolation(frame.shape[:2], (h, w), rule))


def preprocess_bgr(
    frame: np.ndarray, size: Tuple[int, int], out: Optional[np.ndarray] = None, *, resize: str
) -> np.ndarray:
    """One uint8 BGR frame -> float32 [3,H,W] RGB in [0,1], written into ``out`` when given.

    ``size`` is the model's (H, W); ``resize`` its rule (``metadata.resize``). ``out`` is a
    reused [3,H,W] float32 buffer (e.g. a slice of the batch tensor) so the hot path does not
    allocate.
    """
    h, w = size
    frame = resize_bgr(frame, (h, w), resize)
    if out is None:
        out = np.empty((3, h, w), dtype=np.float32)
    # BGR -> RGB by reversed channel order while transposing HWC -> CHW, then scale in place.
    np.multiply(frame.transpose(2, 0, 1)[::-1], np.float32(1.0 / 255.0), out=out, casting="unsafe")
    return out


class ModelInput(Protocol):
    """What preprocessing needs to know of a model: its input size and resize rule. The
    exported model's ModelMetadata and the checkpoint's ModelConfig both are one."""

    @property
    def image_size(self) -> Sequence[int]: ...  # (H, W)

    @property
    def resize(self) -> str: ...


def preprocess_for(model: ModelInput, frame: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """:func:`preprocess_bgr` at ``model``'s size by ``model``'s rule: the call every path makes."""
    size = (int(model.image_size[0]), int(model.image_size[1]))
    return preprocess_bgr(frame, size, out, resize=model.resize)


__all__ = [
    "RESIZE_AREA_LINEAR",
    "RESIZE_DEFAULT",
    "RESIZE_LINEAR",
    "ModelInput",
    "preprocess_bgr",
    "preprocess_for",
    "resize_bgr",
    "resize_interpolation",
]
