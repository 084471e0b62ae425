"""Image and mask I/O with OpenCV, normalized to the one layout the pipeline uses.

Every image leaves this module as an HxWx3 uint8 BGR array (OpenCV's convention); every mask as
an HxW bool array. Torch-free: the Jetson runtime imports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

import numpy as np

from .errors import DatasetError, ImageReadError
from .files import PathLike
from .optional import LazyModule, import_cv2

# rd_edge.runtime imports this module before any other cv2 user: a numpy that OpenCV was not built
# for fails here, in one line that says what to do.
if TYPE_CHECKING:
    import cv2
else:
    cv2 = import_cv2()


def require_opencv() -> None:
    """ImageReadError naming the install when OpenCV is missing: commands check first, so a
    missing OpenCV is one error, not one warning per image."""
    if isinstance(cv2, LazyModule):
        cv2.load()


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_SUPPORTED = (
    "supported: 2-D grayscale, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) arrays of dtype uint8, "
    "uint16, bool, or float in [0, 1]"
)


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Convert a decoded image to a contiguous HxWx3 uint8 BGR array.

    Grayscale is replicated to 3 channels, alpha is dropped, uint16 is scaled by 1/257
    (65535 -> 255, rounded), float in [0, 1] is scaled by 255 (rounded), bool becomes 0/255.
    Raises ImageReadError for any other shape or dtype.
    """
    if not isinstance(image, np.ndarray):
        raise ImageReadError(f"expected a numpy array, found {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    _check_layout(image)
    image = _to_uint8(image)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def _check_layout(image: np.ndarray) -> None:
    """Raise ImageReadError unless the array is a non-empty 2-D, HxWx3 or HxWx4 image."""
    shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
    if not shape_ok or image.size == 0:
        raise ImageReadError(
            f"unsupported image array: shape {image.shape}, dtype {image.dtype}; {_SUPPORTED}"
        )


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale the pixel values of a supported dtype to uint8."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * np.uint8(255)
    if image.dtype == np.uint16:
        # Exact rounding of x / 257 in integers; 257 is odd, so there are no ties.
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        return _float_to_uint8(image)
    raise ImageReadError(f"unsupported image dtype {image.dtype} (shape {image.shape}); {_SUPPORTED}")


def _float_to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a float image in [0, 1] to uint8; other ranges are refused, not clipped."""
    if not np.all(np.isfinite(image)):
        raise ImageReadError(f"float image (shape {image.shape}) contains NaN or infinite values")
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 1.0:
        # Clipping would silently turn e.g. a 0..255 float image white; make the caller decide.
        raise ImageReadError(
            f"float image values must lie in [0, 1], found range [{low:g}, {high:g}]; "
            "scale the image to [0, 1] or convert it to uint8 first"
        )
    return np.rint(image.astype(np.float64) * 255.0).astype(np.uint8)


# The one pixel cap every decoder shares (rd-infer, rd-serve, calibration, training, export):
# no image is decoded into more pixels than this. 64 MP is 192 MB as BGR uint8; a 631-byte JPEG
# can declare 20000x20000 (400 MP, 1.2 GB). RD_EDGE_MAX_IMAGE_PIXELS raises it for real scans.
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
MAX_IMAGE_PIXELS_ENV = "RD_EDGE_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel cap: RD_EDGE_MAX_IMAGE_PIXELS when set (a positive integer), else 64 MP."""
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise ImageReadError(f"{MAX_IMAGE_PIXELS_ENV}={text!r}: expected a positive number of pixels")
    return int(text)


def _decode(path: PathLike, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode a file as OpenCV stores it (IMREAD_UNCHANGED), with errors that name the path.

    With ``max_pixels``, a PNG or JPEG whose header announces more pixels is decoded with
    OpenCV's IMREAD_REDUCED_COLOR_{2,4,8} (8-bit BGR, 1/N per side): one full-size buffer at
    most (IMREAD_UNCHANGED took two: 2.3 GB for 20000x20000), and JPEG decodes at 1/N directly.
    An image that would decode into more than max_image_pixels() is refused before decoding.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"cannot read image {path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"cannot read image {path}: it is a folder, expected an image file")
    try:
        # np.fromfile + imdecode instead of cv2.imread: imread cannot open non-ASCII paths on
        # Windows and gives no reason when it fails.
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    if data.size == 0:
        raise ImageReadError(f"cannot read image {path}: the file is empty (0 bytes)")
    image = _within_cap(cv2.imdecode(data, _bounded_flag(data, max_pixels, f"image {path}")), f"image {path}")
    if image is None:
        raise ImageReadError(
            f"cannot decode image {path} ({data.size} bytes): the file is corrupt or not in a "
            f"format OpenCV reads (expected one of {', '.join(IMAGE_EXTENSIONS)})"
        )
    return image


_REDUCED = {2: "IMREAD_REDUCED_COLOR_2", 4: "IMREAD_REDUCED_COLOR_4", 8: "IMREAD_REDUCED_COLOR_8"}


def _bounded_flag(data: np.ndarray, max_pixels: Optional[int], what: str) -> int:
    """The imdecode flag: IMREAD_UNCHANGED, or the strongest IMREAD_REDUCED_COLOR_N that keeps at
    least ``max_pixels`` pixels when the header says the image is larger. ImageReadError when the
    decoder would still produce more than max_image_pixels() (only JPEG decodes at 1/N directly;
    other formats decode in full first)."""
    size = _header_size(data[: 64 * 1024].tobytes())
    if size is None:
        return cv2.IMREAD_UNCHANGED  # no header we read: OpenCV's own limit (2^30 pixels) applies
    h, w = size
    flag, factor = cv2.IMREAD_UNCHANGED, 1
    if max_pixels is not None and h * w > max_pixels:
        fitting = [n for n in (8, 4, 2) if (h // n) * (w // n) >= max_pixels]
        if fitting:
            flag, factor = getattr(cv2, _REDUCED[fitting[0]]), fitting[0]
    decoded = h * w if data[:2].tobytes() != b"\xff\xd8" else -(-h // factor) * -(-w // factor)
    cap = max_image_pixels()
    if decoded > cap:
        raise ImageReadError(
            f"cannot decode {what}: it declares {w}x{h} pixels, more than the cap of {cap:,} "
            f"decoded pixels (a decompression bomb, or a scan larger than this runtime "
            f"takes); set {MAX_IMAGE_PIXELS_ENV} to raise the cap"
        )
    return flag


def _within_cap(image: Optional[np.ndarray], what: str) -> Optional[np.ndarray]:
    """``image``, or ImageReadError when it holds more pixels than the cap: formats whose header is
    not read first (BMP, TIFF, ...) are checked once decoded, before anything else takes them."""
    cap = max_image_pixels()
    if image is not None and image.shape[0] * image.shape[1] > cap:
        h, w = image.shape[:2]
        raise ImageReadError(
            f"cannot use {what}: it has {w}x{h} pixels, more than the cap of {cap:,} decoded "
            f"pixels; set {MAX_IMAGE_PIXELS_ENV} to raise the cap"
        )
    return image


def _header_size(head: bytes) -> Optional[Tuple[int, int]]:
    """(H, W) from a PNG IHDR or a JPEG SOF marker; None for other formats or a damaged header."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            return None
        marker, length = head[i + 1], int.from_bytes(head[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            return int.from_bytes(head[i + 5 : i + 7], "big"), int.from_bytes(head[i + 7 : i + 9], "big")
        i += 2 + length
    return None


def decode_image(data: bytes, source: str = "image", max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode an encoded image held in memory (PNG, JPEG, ...) as read_image does a file: an
    HxWx3 uint8 BGR array; ImageReadError naming ``source`` when it is empty, does not decode or
    exceeds the pixel cap. ``max_pixels``: downscale on decode, as read_image."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageReadError(f"cannot decode {source}: it is empty (0 bytes)")
    image = _within_cap(cv2.imdecode(buffer, _bounded_flag(buffer, max_pixels, source)), source)
    if image is not None and max_pixels is not None:
        image = downscale_to_budget(image, max_pixels)
    if image is None:
        raise ImageReadError(
            f"cannot decode {source} ({buffer.size} bytes): the data is corrupt or not in "
            f"a format OpenCV reads (expected one of {', '.join(IMAGE_EXTENSIONS)})"
        )
    try:
        return to_bgr_uint8(image)
    except ImageReadError as exc:
        raise ImageReadError(f"cannot use {source}: {exc}") from exc


# Pixel budget for frames kept for display: 3840x2160 (4K UHD), the most any screen or overlay
# shows. The model sees H x W (e.g. 256x256) however large the frame, so a bigger copy adds memory,
# not information: a 20000x20000 frame is 1.2 GB as uint8 BGR and its full-size float map 1.6 GB.
MAX_DISPLAY_PIXELS = 3840 * 2160


def fit_pixels(size_hw: Tuple[int, int], max_pixels: int = MAX_DISPLAY_PIXELS) -> Tuple[int, int]:
    """(H, W) scaled down, aspect kept, to at most ``max_pixels``; unchanged when within it."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if h * w <= max_pixels:
        return h, w
    factor = (max_pixels / (h * w)) ** 0.5
    return max(1, int(h * factor)), max(1, int(w * factor))


def downscale_to_budget(image: np.ndarray, max_pixels: int = MAX_DISPLAY_PIXELS) -> np.ndarray:
    """``image`` resized (INTER_AREA) to fit ``max_pixels``, or itself when it already fits."""
    h, w = fit_pixels(image.shape[:2], max_pixels)
    if (h, w) == image.shape[:2]:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def read_image(path: PathLike, max_pixels: Optional[int] = None) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 BGR array; raises ImageReadError naming the path.

    ``max_pixels``: downscale once, right after decoding, to at most this many pixels (see
    MAX_DISPLAY_PIXELS), so only one full-size copy ever exists, briefly.
    """
    image = _decode(path, max_pixels)
    if max_pixels is not None and image.size:
        image = downscale_to_budget(image, max_pixels)  # before any dtype/channel conversion copies
    try:
        return to_bgr_uint8(image)
    except ImageReadError as exc:
        raise ImageReadError(f"cannot use image {path}: {exc}") from exc


def image_size(path: PathLike) -> Tuple[int, int]:
    """(H, W) of an image file, from its PNG/JPEG header when it has one (no decoding), else decoded."""
    try:
        with open(path, "rb") as f:
            size = _header_size(f.read(64 * 1024))
    except OSError as exc:
        raise ImageReadError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    if size is not None:
        return size
    height, width = _decode(path).shape[:2]
    return int(height), int(width)


def read_mask(path: PathLike, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Read a ground-truth mask as an HxW bool array (nonzero = defect).

    ``size`` is (height, width); when given the mask is resized with nearest-neighbour
    sampling so it stays binary.
    """
    raw = _decode(path)
    if raw.ndim == 3:
        if raw.shape[2] == 4:
            raw = raw[:, :, :3]  # Alpha is transparency, not a defect label.
        mask = np.any(raw != 0, axis=2)
    elif raw.ndim == 2:
        mask = raw != 0
    else:
        raise ImageReadError(f"cannot use mask {path}: unsupported shape {raw.shape}")
    if size is not None:
        mask = _resize_mask(mask, size)
    return mask


def _resize_mask(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to (height, width) with nearest-neighbour sampling."""
    if len(size) != 2 or any(int(s) != s or s <= 0 for s in size):
        raise ValueError(f"mask size must be (height, width) with positive integers, got {size!r}")
    height, width = int(size[0]), int(size[1])
    if mask.shape == (height, width):
        return mask
    resized = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return resized.astype(bool)


def list_images(folder: PathLike, recursive: bool = True) -> List[Path]:
    """Return the sorted image files in ``folder`` (extensions in IMAGE_EXTENSIONS, any case).

    Hidden files and folders (names starting with ".") are skipped: they are typically
    macOS "._name.png" resource forks or tool caches, not images. Raises DatasetError if
    ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        found = "a file" if folder.exists() else "no such folder"
        raise DatasetError(f"expected a folder of images at {folder}, found {found}")
    if recursive:
        files = [Path(root) / name for root, dirs, names in _walk(folder) for name in names]
    else:
        files = [entry for entry in folder.iterdir() if entry.is_file()]
    return sorted(f for f in files if _is_image_name(f.name))


def _walk(folder: Path):
    """os.walk that prunes hidden folders in place so they are not descended into."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield root, dirs, names


def _is_image_name(name: str) -> bool:
    """True for visible files whose extension is a supported image extension."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
