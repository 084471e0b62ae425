"""One pixel cap for every decoder (issue 21, case 4): a 631-byte JPEG may declare 20000x20000."""

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import jpeg_bomb

from rd_edge.core.errors import ImageReadError
from rd_edge.core.images import MAX_DISPLAY_PIXELS, decode_image, read_image

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))  # huge_png


def test_a_jpeg_bomb_is_refused_before_decoding_at_full_size():
    bomb = jpeg_bomb()
    assert len(bomb) < 700
    t0 = time.perf_counter()
    with pytest.raises(ImageReadError, match=r"declares 20000x20000 pixels, more than the cap"):
        decode_image(bomb, "IMAGE item 0")
    assert time.perf_counter() - t0 < 0.5  # refused from the header, not after a decode


def test_a_jpeg_bomb_for_a_resizing_model_decodes_reduced_and_bounded():
    """rd-infer and rd-serve on a model that resizes: JPEG decodes at 1/N directly."""
    frame = decode_image(jpeg_bomb(), "IMAGE item 0", max_pixels=MAX_DISPLAY_PIXELS)
    assert frame.shape[0] * frame.shape[1] <= MAX_DISPLAY_PIXELS


def test_a_png_bomb_is_refused_by_every_reader(tmp_path):
    """PNG has no reduced decode: a 10000x10000 PNG (100 MP) is refused whatever the consumer."""
    from huge_png import write_huge_png

    path = tmp_path / "bomb.png"
    write_huge_png(path, 10000)
    for max_pixels in (None, MAX_DISPLAY_PIXELS):
        with pytest.raises(ImageReadError, match="RD_EDGE_MAX_IMAGE_PIXELS"):
            read_image(path, max_pixels)
    with pytest.raises(ImageReadError, match="cap"):
        decode_image(path.read_bytes(), "IMAGE item 0")


def test_the_cap_is_one_setting(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), np.zeros((100, 120, 3), np.uint8))
    assert read_image(path).shape == (100, 120, 3)
    monkeypatch.setenv("RD_EDGE_MAX_IMAGE_PIXELS", "11999")
    with pytest.raises(ImageReadError, match="120x100"):
        read_image(path)
    bmp = tmp_path / "small.bmp"  # no header read before decoding: checked once decoded
    cv2.imwrite(str(bmp), np.zeros((100, 120, 3), np.uint8))
    with pytest.raises(ImageReadError, match="120x100 pixels, more than the cap"):
        read_image(bmp)
    monkeypatch.setenv("RD_EDGE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ImageReadError, match="positive number"):
        read_image(path)
