"""GenICam pixel formats (PFNC codes, as GigE Vision / USB3 Vision cameras send them) -> BGR uint8.

Bayer names follow GenICam: the colour of the top-left 2x2 block read row by row (BayerRG8: R G /
G B). OpenCV names its Bayer conversions by the block starting at the second row and column, so
GenICam RG is OpenCV's BG, GB is GR, GR is GB and BG is RG; mixing them up swaps red and blue.
Deeper formats (10, 12, 14, 16 bits in a 16-bit little-endian word, or 12 bits packed into 3 bytes
per 2 pixels) are demosaiced or kept at full depth first, then scaled to 8 bits by their depth.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import numpy as np

from rd_edge.core.errors import RdEdgeError


class PixelFormatError(RdEdgeError):
    """A frame in a pixel format this converter does not know, or of the wrong size."""


_BAYER_8 = {0x01080008: "GR", 0x01080009: "RG", 0x0108000A: "GB", 0x0108000B: "BG"}
_BAYER_16 = {  # PFNC code -> (GenICam pattern, significant bits)
    0x0110000C: ("GR", 10),
    0x0110000D: ("RG", 10),
    0x0110000E: ("GB", 10),
    0x0110000F: ("BG", 10),
    0x01100010: ("GR", 12),
    0x01100011: ("RG", 12),
    0x01100012: ("GB", 12),
    0x01100013: ("BG", 12),
    0x0110002E: ("GR", 16),
    0x0110002F: ("RG", 16),
    0x01100030: ("GB", 16),
    0x01100031: ("BG", 16),
}
_MONO_16 = {0x01100003: 10, 0x01100005: 12, 0x01100025: 14, 0x01100007: 16}  # Mono10/12/14/16
MONO8, MONO12_PACKED, MONO12P = 0x01080001, 0x010C0006, 0x010C0047
RGB8, BGR8, YUV422_UYVY, YUV422_YUYV = 0x02180014, 0x02180015, 0x0210001F, 0x02100032
# GenICam pattern -> OpenCV's name for the same mosaic (see the module docstring).
_OPENCV_BAYER = {"RG": "BG", "GB": "GR", "GR": "GB", "BG": "RG"}

NAMES: Dict[int, str] = {
    MONO8: "Mono8",
    MONO12_PACKED: "Mono12Packed",
    MONO12P: "Mono12p",
    RGB8: "RGB8",
    BGR8: "BGR8",
    YUV422_UYVY: "YUV422Packed",
    YUV422_YUYV: "YUV422_YUYVPacked",
    **{code: f"Mono{bits}" for code, bits in _MONO_16.items()},
    **{code: f"Bayer{p}8" for code, p in _BAYER_8.items()},
    **{code: f"Bayer{p}{bits}" for code, (p, bits) in _BAYER_16.items()},
}


def to_bgr(data: bytes, width: int, height: int, pixel_format: int) -> np.ndarray:
    """One camera buffer -> HxWx3 uint8 BGR; PixelFormatError for an unknown format or size."""
    convert = _converter(pixel_format)
    raw = np.frombuffer(data, np.uint8)
    bits_per_pixel = (pixel_format >> 16) & 0xFF  # PFNC: the code's second byte
    expected = width * height * bits_per_pixel // 8
    if raw.size < expected:
        raise PixelFormatError(
            f"a {NAMES[pixel_format]} frame of {width}x{height} needs {expected} bytes, "
            f"the camera sent {raw.size} (an incomplete buffer)"
        )
    return convert(raw[:expected], width, height)


def _converter(pixel_format: int) -> Callable[[np.ndarray, int, int], np.ndarray]:
    if pixel_format == MONO8:
        return lambda raw, w, h: _gray(raw.reshape(h, w))
    if pixel_format in _MONO_16:
        bits = _MONO_16[pixel_format]
        return lambda raw, w, h: _gray(_to_8(_words(raw, h, w), bits))
    if pixel_format in (MONO12_PACKED, MONO12P):
        unpack = _unpack_mono12_packed if pixel_format == MONO12_PACKED else _unpack_mono12p
        return lambda raw, w, h: _gray(_to_8(unpack(raw, h, w), 12))
    if pixel_format in _BAYER_8:
        code = _bayer_code(_BAYER_8[pixel_format])
        return lambda raw, w, h: _cv2().cvtColor(raw.reshape(h, w), code)
    if pixel_format in _BAYER_16:
        pattern, bits = _BAYER_16[pixel_format]
        code = _bayer_code(pattern)
        return lambda raw, w, h: _to_8(_cv2().cvtColor(_words(raw, h, w), code), bits)
    if pixel_format in (RGB8, BGR8):
        flip = pixel_format == RGB8
        return lambda raw, w, h: np.ascontiguousarray(
            raw.reshape(h, w, 3)[:, :, ::-1] if flip else raw.reshape(h, w, 3)
        )
    if pixel_format in (YUV422_UYVY, YUV422_YUYV):
        cv2 = _cv2()
        code = cv2.COLOR_YUV2BGR_UYVY if pixel_format == YUV422_UYVY else cv2.COLOR_YUV2BGR_YUYV
        return lambda raw, w, h: cv2.cvtColor(raw.reshape(h, w, 2), code)
    known = ", ".join(sorted(NAMES.values()))
    raise PixelFormatError(
        f"pixel format 0x{pixel_format:08x} is not supported; set the camera's PixelFormat to one of: {known}"
    )


def _cv2() -> Any:
    import cv2

    return cv2


def _bayer_code(genicam_pattern: str) -> int:
    return int(getattr(_cv2(), f"COLOR_Bayer{_OPENCV_BAYER[genicam_pattern]}2BGR"))


def _words(raw: np.ndarray, h: int, w: int) -> np.ndarray:
    """Little-endian 16-bit words, [H, W]."""
    return raw.view("<u2").reshape(h, w)


def _to_8(image: np.ndarray, bits: int) -> np.ndarray:
    """Values of ``bits`` significant bits -> uint8 (the top 8 of them)."""
    return (image >> (bits - 8)).astype(np.uint8)


def _gray(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _triplets(raw: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = raw.reshape(-1, 3).astype(np.uint16)
    return b[:, 0], b[:, 1], b[:, 2]


def _unpack_mono12_packed(raw: np.ndarray, h: int, w: int) -> np.ndarray:
    """GigE Vision Mono12Packed: byte0 = p0 bits 11..4, byte1 = p1 bits 3..0 | p0 bits 3..0, byte2 = p1 bits 11..4."""
    b0, b1, b2 = _triplets(raw)
    out = np.empty((b0.size, 2), np.uint16)
    out[:, 0] = (b0 << 4) | (b1 & 0x0F)
    out[:, 1] = (b2 << 4) | (b1 >> 4)
    return out.reshape(h, w)


def _unpack_mono12p(raw: np.ndarray, h: int, w: int) -> np.ndarray:
    """PFNC Mono12p (LSB first): byte0 = p0 bits 7..0, byte1 = p1 bits 3..0 | p0 bits 11..8, byte2 = p1 bits 11..4."""
    b0, b1, b2 = _triplets(raw)
    out = np.empty((b0.size, 2), np.uint16)
    out[:, 0] = b0 | ((b1 & 0x0F) << 8)
    out[:, 1] = (b1 >> 4) | (b2 << 4)
    return out.reshape(h, w)
