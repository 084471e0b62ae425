"""Image files -> model input -> maps and scores: the offline paths' shared loop."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from rd_edge.core.errors import ImageReadError
from rd_edge.core.metadata import RESIZE_AREA_LINEAR, RESIZE_LINEAR
from rd_edge.core.preprocess import preprocess_bgr
from rd_edge.core.scoring import load_batch, score_images


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 256, (40 + i, 60, 3), dtype=np.uint8))
    return paths


def run(batch):  # [n,3,h,w] -> ([n,1,h,w], [n])
    maps = batch.mean(axis=1, keepdims=True)
    return maps, maps.reshape(len(batch), -1).max(axis=1)


@pytest.mark.parametrize("rule", [RESIZE_LINEAR, RESIZE_AREA_LINEAR])
def test_load_batch_is_the_runtime_preprocessing_by_the_models_rule(images, rule):
    model = SimpleNamespace(image_size=(16, 24), resize=rule)
    want = np.stack([preprocess_bgr(cv2.imread(str(p)), (16, 24), resize=rule) for p in images])
    np.testing.assert_array_equal(load_batch(images, model), want)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_scores_do_not_depend_on_the_batching(images, batch_size):
    model = SimpleNamespace(image_size=(16, 24), resize=RESIZE_AREA_LINEAR)
    maps, scores = score_images(images, model, run, batch_size)
    want_maps, want_scores = run(load_batch(images, model))
    assert maps.shape == (5, 16, 24) and maps.dtype == np.float32 and scores.dtype == np.float64
    np.testing.assert_array_equal(maps, want_maps[:, 0])
    np.testing.assert_array_equal(scores, want_scores)
    starts = []
    score_images(images, model, run, batch_size, progress=lambda s: (starts.append(i) or i for i in s))
    assert starts == list(range(0, 5, batch_size))


def test_no_images_and_bad_input(tmp_path, images):
    model = SimpleNamespace(image_size=(16, 24), resize=RESIZE_LINEAR)
    maps, scores = score_images([], model, run)
    assert maps.shape == (0, 16, 24) and scores.shape == (0,)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        score_images(images + [tmp_path / "broken.png"], model, run, 2)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        score_images(images, model, run, 0)
