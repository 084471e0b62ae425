"""rd-export verifies the graph on the user's own training images when the checkpoint knows them,
whatever the layout it was trained from: a dataset folder or plain folders (--good)."""

import shutil

from rd_edge.model import ModelConfig
from rd_export.verify import check_images


def test_plain_good_folder_is_used_not_random_images(demo_category, tmp_path):
    good = tmp_path / "photos"
    good.mkdir()
    for path in sorted((demo_category / "train" / "good").glob("*.png"))[:5]:
        shutil.copy(path, good / path.name)
    config = ModelConfig(backbone="resnet18", image_size=(64, 64))
    batch, source = check_images(config, str(good))
    assert source == f"training images from {good}" and batch.shape == (4, 3, 64, 64)
    batch, source = check_images(config, str(demo_category))  # a dataset folder: its train split
    assert source.startswith("training images")
    assert check_images(config, str(tmp_path / "gone"))[1] == "random images"


def test_runtime_parity_needs_both_the_map_and_the_score_within_the_tolerance():
    """By hand (issue 28): a map off by 0.01 fails at 1e-3 even with the same score, and so does a
    score off by 0.01 with the same map; the report keeps the largest differences."""
    import numpy as np

    from rd_export.verify import _parity

    ref_map, ref_score = np.zeros((2, 1, 4, 4), np.float32), np.array([0.5, 0.7], np.float32)
    moved = ref_map.copy()
    moved[1, 0, 2, 3] = 0.01
    assert _parity("ort", ref_map, ref_score, ref_map, ref_score, 1e-3).ok
    off_map = _parity("ort", ref_map, ref_score, moved, ref_score, 1e-3)
    off_score = _parity("ort", ref_map, ref_score, ref_map, ref_score + np.float32(0.01), 1e-3)
    assert (off_map.ok, off_score.ok) == (False, False)
    assert (off_map.max_abs_map, off_map.max_abs_score) == (np.float32(0.01), 0.0)
