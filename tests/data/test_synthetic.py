"""The synthetic demo dataset: deterministic, MVTec-layout, with masks exactly on the defects."""

from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from rd_edge.cli.main import main
from rd_edge.core.errors import DatasetError
from rd_edge.data import (
    DEMO_CATEGORIES,
    DEMO_DEFECTS,
    MVTecCategory,
    read_image,
    read_mask,
    render_demo_image,
    write_demo_dataset,
)

SMALL = dict(image_size=64, n_train=3, n_test_good=2, n_test_per_defect=2)


def file_bytes(root: Path) -> Dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_write_identical_bytes(tmp_path):
    write_demo_dataset(tmp_path / "a", ["weave", "dots"], seed=3, **SMALL)
    write_demo_dataset(tmp_path / "b", ["weave", "dots"], seed=3, **SMALL)
    a, b = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert len(a) == 2 * (3 + 2 + 2 * len(DEMO_DEFECTS) * 2) + 2  # images, masks, markers
    assert a == b


def test_each_image_depends_only_on_its_own_seed(tmp_path):
    # The first training image must not change when more images are written.
    write_demo_dataset(tmp_path / "a", ["grain"], **SMALL)
    write_demo_dataset(tmp_path / "b", ["grain"], **{**SMALL, "n_train": 5})
    path = "grain/train/good/000.png"
    assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()


def test_other_seed_gives_other_images(tmp_path):
    write_demo_dataset(tmp_path / "a", ["dots"], seed=0, **SMALL)
    write_demo_dataset(tmp_path / "b", ["dots"], seed=1, **SMALL)
    path = "dots/train/good/000.png"
    assert (tmp_path / "a" / path).read_bytes() != (tmp_path / "b" / path).read_bytes()


def test_written_layout_is_discoverable_with_masks(tmp_path):
    (folder,) = write_demo_dataset(tmp_path, ["weave"], **SMALL)
    data = MVTecCategory(folder)
    assert data.name == "weave"
    assert len(data.train_paths()) == 3
    assert data.defect_types() == sorted(DEMO_DEFECTS)
    samples = data.test_samples()
    assert sum(not s.is_anomalous for s in samples) == 2
    for sample in samples:
        image = read_image(sample.path)
        assert image.shape == (64, 64, 3)
        if sample.is_anomalous:
            mask = read_mask(sample.mask_path)
            assert mask.shape == (64, 64) and mask.any() and not mask.all()


def test_normal_images_vary():
    rng = np.random.default_rng
    first = render_demo_image("weave", "good", 64, rng(0)).image
    second = render_demo_image("weave", "good", 64, rng(1)).image
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 5


@pytest.mark.parametrize("category", DEMO_CATEGORIES)
@pytest.mark.parametrize("defect", DEMO_DEFECTS)
def test_mask_covers_exactly_the_drawn_defect(category, defect):
    for seed in range(3):
        sample = render_demo_image(category, defect, 128, np.random.default_rng(seed))
        mask = sample.mask
        assert mask.dtype == bool and 20 < mask.sum() < 0.2 * mask.size
        # Outside the mask the image is bit-identical to the defect-free rendering ...
        np.testing.assert_array_equal(sample.image[~mask], sample.normal[~mask])
        # ... and inside it the defect is clearly visible.
        diff = np.abs(sample.image.astype(int) - sample.normal.astype(int)).max(axis=2)
        assert diff[mask].mean() > 10


def test_good_images_have_empty_masks():
    sample = render_demo_image("dots", "good", 64, np.random.default_rng(0))
    assert not sample.mask.any()
    np.testing.assert_array_equal(sample.image, sample.normal)


def test_unknown_category_lists_the_known_ones(tmp_path):
    with pytest.raises(DatasetError, match="weave, dots, grain"):
        write_demo_dataset(tmp_path, ["carpet"], **SMALL)
    assert not any(tmp_path.iterdir())


def test_rerun_replaces_an_earlier_demo_without_stale_files(tmp_path):
    write_demo_dataset(tmp_path, ["dots"], **{**SMALL, "n_train": 5})
    write_demo_dataset(tmp_path, ["dots"], **SMALL)
    assert len(list((tmp_path / "dots" / "train" / "good").iterdir())) == 3


def test_refuses_to_overwrite_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "weave").mkdir()
    (tmp_path / "weave" / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not written by"):
        write_demo_dataset(tmp_path, ["dots", "weave"], **SMALL)
    assert (tmp_path / "weave" / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / "dots").exists()  # checked before anything is written


def test_bad_counts_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        write_demo_dataset(tmp_path, ["dots"], image_size=8)


def test_cli_demo_data_writes_files(tmp_path, capsys):
    code = main(
        [
            "demo-data",
            str(tmp_path),
            "--categories",
            "dots,grain",
            "--image-size",
            "48",
            "--n-train",
            "2",
            "--n-test-good",
            "1",
            "--n-test-per-defect",
            "1",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "dots" in out and "grain" in out
    assert len(MVTecCategory(tmp_path / "grain").train_paths()) == 2
    assert len(MVTecCategory(tmp_path / "dots").test_samples()) == 1 + len(DEMO_DEFECTS)


def test_cli_error_is_one_line_without_traceback(tmp_path, capsys):
    code = main(["demo-data", str(tmp_path), "--categories", "carpet"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown demo category 'carpet'") and "Traceback" not in err
