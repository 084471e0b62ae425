"""Image and mask reading: every input ends up as HxWx3 uint8 BGR / HxW bool, or a clear error."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from rd_edge.core.errors import DatasetError, ImageReadError, RdEdgeError
from rd_edge.data import IMAGE_EXTENSIONS, list_images, read_image, read_mask, to_bgr_uint8


def write_png(path: Path, image: np.ndarray) -> Path:
    ok, data = cv2.imencode(".png", image)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    data.tofile(str(path))
    return path


# --- to_bgr_uint8 ----------------------------------------------------------------------------


def test_gray_2d_and_hw1_become_three_equal_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for image in (gray, gray[:, :, None]):
        out = to_bgr_uint8(image)
        assert out.shape == (3, 4, 3) and out.dtype == np.uint8
        for c in range(3):
            np.testing.assert_array_equal(out[:, :, c], gray)


def test_bgra_drops_alpha_and_keeps_bgr():
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 0
    out = to_bgr_uint8(bgra)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])


def test_uint16_is_scaled_by_1_over_257_with_rounding():
    values = np.array([[0, 128, 129, 257, 32896, 65535]], np.uint16)
    out = to_bgr_uint8(values)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 1, 128, 255])


def test_float_in_unit_range_and_bool():
    out = to_bgr_uint8(np.array([[0.0, 0.25, 1.0]], np.float32))
    np.testing.assert_array_equal(out[0, :, 0], [0, 64, 255])
    out = to_bgr_uint8(np.array([[False, True]]))
    np.testing.assert_array_equal(out[0, :, 2], [0, 255])


def test_float_outside_unit_range_is_refused_not_clipped():
    with pytest.raises(ImageReadError, match=r"\[0, 1\].*found range \[0, 255\]"):
        to_bgr_uint8(np.array([[0.0, 255.0]], np.float32))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((0, 4), np.uint8),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((1, 4, 4, 3), np.uint8),
        np.zeros((4, 4), np.int32),
    ],
)
def test_unsupported_arrays_raise_with_shape_and_dtype(image):
    with pytest.raises(ImageReadError) as info:
        to_bgr_uint8(image)
    assert str(image.shape) in str(info.value) and str(image.dtype) in str(info.value)
    assert isinstance(info.value, RdEdgeError)


# --- read_image ------------------------------------------------------------------------------


def test_read_image_converts_16bit_gray_rgba_and_gray_files(tmp_path):
    gray16 = np.full((5, 7), 65535, np.uint16)
    bgra = np.zeros((5, 7, 4), np.uint8)
    bgra[..., 2] = 200
    gray8 = np.full((5, 7), 42, np.uint8)
    cases = [("g16.png", gray16, 255), ("bgra.png", bgra, None), ("g8.png", gray8, 42)]
    for name, image, value in cases:
        out = read_image(write_png(tmp_path / name, image))
        assert out.shape == (5, 7, 3) and out.dtype == np.uint8
        if value is not None:
            assert (out == value).all()
    np.testing.assert_array_equal(read_image(tmp_path / "bgra.png")[0, 0], [0, 0, 200])


def test_read_image_handles_non_ascii_paths(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    path = write_png(tmp_path / "prüfteil_ß" / "bild_ä.png", image)
    np.testing.assert_array_equal(read_image(path), image)


def test_read_image_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="no such file") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_read_image_empty_file_names_the_path(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_read_image_corrupt_file_names_the_path(tmp_path):
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    with pytest.raises(ImageReadError, match="cannot decode") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_read_image_on_a_folder_raises(tmp_path):
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


# --- read_mask -------------------------------------------------------------------------------


def test_read_mask_is_bool_nonzero_is_defect(tmp_path):
    mask = np.zeros((4, 6), np.uint8)
    mask[1, 2], mask[3, 5] = 255, 1
    out = read_mask(write_png(tmp_path / "m.png", mask))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, mask > 0)


def test_read_mask_resizes_to_height_width_nearest(tmp_path):
    mask = np.zeros((4, 6), np.uint8)
    mask[:, :3] = 255  # left half is defect
    out = read_mask(write_png(tmp_path / "m.png", mask), size=(8, 12))
    assert out.shape == (8, 12) and out.dtype == bool
    assert out[:, :6].all() and not out[:, 6:].any()


def test_read_mask_color_mask_any_channel(tmp_path):
    mask = np.zeros((3, 3, 3), np.uint8)
    mask[1, 1, 2] = 255
    out = read_mask(write_png(tmp_path / "m.png", mask))
    assert out.sum() == 1 and out[1, 1]


def test_read_mask_bad_size_raises(tmp_path):
    path = write_png(tmp_path / "m.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="height, width"):
        read_mask(path, size=(0, 4))


# --- list_images -----------------------------------------------------------------------------


def test_list_images_filters_sorts_and_recurses(tmp_path):
    for name in ["b.png", "a.JPG", "c.tiff", "notes.txt", "._a.png", "sub/d.bmp", ".cache/e.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.JPG", "b.png", "c.tiff", "sub/d.bmp"]
    flat = [p.name for p in list_images(tmp_path, recursive=False)]
    assert flat == ["a.JPG", "b.png", "c.tiff"]


def test_list_images_missing_folder_raises(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        list_images(tmp_path / "missing")


def test_image_extensions_are_lowercase_with_dot():
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)
