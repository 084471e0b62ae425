"""Builders shared by the tests: small checkpoints and demo datasets made on the spot."""

from __future__ import annotations

from rd_edge.checkpoint import RANDOM_SCORE_STATS as SCORE_STATS  # noqa: F401  (re-exported)
from rd_edge.checkpoint import random_checkpoint as make_checkpoint  # noqa: F401  (re-exported)


def unprivileged() -> list:
    """Command prefix that makes root obey file modes (no CAP_DAC_OVERRIDE), as a normal user does,
    so tests of read-only folders mean the same as root (CI) and as a user."""
    import os

    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def one_line_error(err: str) -> bool:
    """What every command prints for a user error: one 'error: ...' line, no traceback."""
    err = err.strip()
    return err.startswith("error: ") and "\n" not in err and "Traceback" not in err


def jpeg_bomb(size: int = 20000) -> bytes:
    """A valid 8x8 JPEG whose frame header says size x size: ~630 bytes, 1.2 GB if decoded in full."""
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])
    raw = bytearray(data.tobytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = size.to_bytes(2, "big") * 2
    return bytes(raw)
