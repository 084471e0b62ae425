"""rd_edge.core.images beyond what tests/data/test_images.py (array conversion, read_image,
read_mask, list_images) and test_pixel_cap.py (decompression bombs) cover: sizes read from the
header, images decoded from memory (rd-serve, MQTT/HTTP payloads), the display budget, and mask
alpha."""

import cv2
import numpy as np
import pytest

from rd_edge.core import images
from rd_edge.core.errors import ImageReadError
from rd_edge.core.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_DISPLAY_PIXELS,
    decode_image,
    downscale_to_budget,
    fit_pixels,
    image_size,
    max_image_pixels,
    read_image,
    read_mask,
)
from rd_edge.core.optional import LazyModule

RNG = np.random.default_rng(0)


def encoded(ext, image):
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_image_size_is_height_width_from_the_header_without_decoding(tmp_path, ext):
    """A 30x50 (H x W) image cut after its header still gives its size: nothing was decoded."""
    data = encoded(ext, RNG.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    whole, cut = tmp_path / f"whole{ext}", tmp_path / f"cut{ext}"
    whole.write_bytes(data)
    cut.write_bytes(data[:400])
    assert image_size(whole) == (30, 50)
    assert image_size(cut) == (30, 50)
    with pytest.raises(ImageReadError):  # the cut file is not an image: only its header is whole
        read_image(cut)


def test_image_size_of_a_format_without_a_read_header_decodes_it(tmp_path):
    path = tmp_path / "scan.bmp"
    path.write_bytes(encoded(".bmp", np.zeros((7, 11), np.uint8)))
    assert image_size(path) == (7, 11)
    assert all(type(v) is int for v in image_size(path))


def test_image_size_of_a_missing_file_names_it(tmp_path):
    path = tmp_path / "gone.png"
    with pytest.raises(ImageReadError) as info:
        image_size(path)
    assert str(info.value) == f"cannot read image {path}: No such file or directory"


@pytest.mark.parametrize("ext", [".png", ".bmp"])
def test_decoding_bytes_gives_what_reading_the_file_gives(tmp_path, ext):
    image = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    (tmp_path / f"x{ext}").write_bytes(encoded(ext, image))
    from_bytes = decode_image(encoded(ext, image), "IMAGE item 0")
    np.testing.assert_array_equal(from_bytes, image)
    np.testing.assert_array_equal(from_bytes, read_image(tmp_path / f"x{ext}"))


def test_decoded_bytes_are_normalized_like_files():
    """Gray and 16-bit PNG payloads come back HxWx3 uint8 BGR, as from read_image."""
    gray16 = np.full((4, 5), 65535, np.uint16)
    out = decode_image(encoded(".png", gray16), "payload")
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and (out == 255).all()
    assert out.flags["C_CONTIGUOUS"]


def test_bytes_that_are_not_an_image_name_the_source():
    with pytest.raises(ImageReadError) as info:
        decode_image(b"", "MQTT message 3")
    assert str(info.value) == "cannot decode MQTT message 3: it is empty (0 bytes)"
    with pytest.raises(ImageReadError) as info:
        decode_image(b"GIF89a" + b"\x00" * 40, "HTTP body")
    assert str(info.value).startswith(
        "cannot decode HTTP body (46 bytes): the data is corrupt or not in a format OpenCV reads"
    )
    assert ".png, .jpg, .jpeg, .bmp, .tif, .tiff" in str(info.value)


@pytest.mark.parametrize(
    "ext, budget, shape",
    [
        (".bmp", 30_000, (200, 150, 3)),  # no header read: decoded in full, then resized
        (".png", 20_000, (163, 122, 3)),  # decoded at 1/2 (200x150), then resized to the budget
    ],
)
def test_decoded_bytes_are_downscaled_to_the_budget_asked_for(ext, budget, shape):
    image = RNG.integers(0, 256, (400, 300, 3), dtype=np.uint8)
    out = decode_image(encoded(ext, image), "payload", max_pixels=budget)
    assert out.shape == shape and out.shape[0] * out.shape[1] <= budget


@pytest.mark.parametrize(
    "size, budget, fitted",
    [
        ((2160, 3840), MAX_DISPLAY_PIXELS, (2160, 3840)),  # exactly the budget: unchanged
        ((2160, 3841), MAX_DISPLAY_PIXELS, (2159, 3840)),  # one column more: scaled
        ((4000, 3000), MAX_DISPLAY_PIXELS, (3325, 2494)),  # aspect 4:3 kept
        ((1000, 1000), 200_000, (447, 447)),
        ((100_000, 2), 1000, (7071, 1)),  # never a zero side (a 1-pixel side may pass the budget)
    ],
)
def test_fit_pixels_keeps_the_aspect_within_the_budget(size, budget, fitted):
    assert fit_pixels(size, budget) == fitted


def test_downscale_to_budget_returns_the_same_array_when_it_fits():
    small = np.zeros((10, 20, 3), np.uint8)
    assert downscale_to_budget(small, 200) is small
    big = np.full((40, 80, 3), 9, np.uint8)
    out = downscale_to_budget(big, 200)
    assert out.shape == (10, 20, 3) and (out == 9).all()


def test_the_pixel_cap_defaults_to_64_megapixels(monkeypatch):
    monkeypatch.delenv("RD_EDGE_MAX_IMAGE_PIXELS", raising=False)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 8192 * 8192
    monkeypatch.setenv("RD_EDGE_MAX_IMAGE_PIXELS", " ")
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS
    monkeypatch.setenv("RD_EDGE_MAX_IMAGE_PIXELS", " 400000000 ")
    assert max_image_pixels() == 400_000_000
    monkeypatch.setenv("RD_EDGE_MAX_IMAGE_PIXELS", "0")
    with pytest.raises(ImageReadError, match="RD_EDGE_MAX_IMAGE_PIXELS='0': expected a positive number"):
        max_image_pixels()


def test_mask_alpha_is_transparency_not_a_defect(tmp_path):
    """An RGBA mask from an image editor: opaque black is good, only coloured pixels are defects."""
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 3] = 255
    bgra[2, 1, 1] = 200
    path = tmp_path / "mask.png"
    path.write_bytes(encoded(".png", bgra))
    mask = read_mask(path)
    assert mask.shape == (4, 4) and mask.dtype == bool
    assert mask.sum() == 1 and mask[2, 1]


def test_require_opencv_is_one_error_naming_the_install(monkeypatch):
    missing = LazyModule(
        "rd_edge_test_no_cv2", "reading and resizing images", "pip install x", ImageReadError
    )
    monkeypatch.setattr(images, "cv2", missing)
    with pytest.raises(
        ImageReadError, match="reading and resizing images needs .* not installed here: pip install x"
    ):
        images.require_opencv()
    monkeypatch.undo()
    images.require_opencv()  # the real OpenCV: nothing to say
