"""MVTec AD layout discovery: what a user's folder must look like, and what they are told if not."""

import shutil
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import pytest

from rd_edge.core.errors import DatasetError
from rd_edge.data import MVTecCategory, Sample


def touch_images(folder: Path, names: Iterable[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    for name in names:
        data.tofile(str(folder / name))


@pytest.fixture
def category(tmp_path: Path) -> Path:
    root = tmp_path / "bottle"
    touch_images(root / "train" / "good", ["001.png", "000.png"])
    touch_images(root / "test" / "good", ["000.png"])
    touch_images(root / "test" / "crack", ["000.png", "001.png"])
    touch_images(root / "test" / "broken", ["000.png"])
    touch_images(root / "ground_truth" / "crack", ["000_mask.png", "001_mask.png"])
    touch_images(root / "ground_truth" / "broken", ["000_mask.png"])
    return root


def test_discovers_train_and_test_images(category):
    data = MVTecCategory(category)
    assert data.name == "bottle"
    assert [p.name for p in data.train_paths()] == ["000.png", "001.png"]
    assert data.defect_types() == ["broken", "crack"]
    samples = data.test_samples()
    assert [(s.defect_type, s.path.name) for s in samples] == [
        ("broken", "000.png"),
        ("crack", "000.png"),
        ("crack", "001.png"),
        ("good", "000.png"),
    ]
    by_key = {(s.defect_type, s.path.name): s for s in samples}
    assert by_key[("crack", "000.png")].mask_path == category / "ground_truth/crack/000_mask.png"
    assert by_key[("good", "000.png")].mask_path is None
    assert [s.is_anomalous for s in samples] == [True, True, True, False]


def test_an_anomalous_image_without_its_mask_is_an_error(category):
    """Masks are all or nothing: one missing would count as all-zero and move the pixel threshold."""
    (category / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 3 anomalous test images have no mask.*crack/001.png"):
        MVTecCategory(category).test_samples()
    for mask in (category / "ground_truth").rglob("*.png"):
        mask.unlink()
    samples = MVTecCategory(category).test_samples()  # no masks at all: image-level metrics only
    assert Sample(category / "test/crack/001.png", "crack", None) in samples


def test_good_only_test_set_needs_no_ground_truth(tmp_path):
    root = tmp_path / "cat"
    touch_images(root / "train" / "good", ["0.png"])
    touch_images(root / "test" / "good", ["0.png", "1.png"])
    data = MVTecCategory(root)
    assert data.defect_types() == []
    assert len(data.test_samples()) == 2


def test_training_only_dataset_is_allowed_until_test_samples_are_asked_for(tmp_path):
    root = tmp_path / "cat"
    touch_images(root / "train" / "good", ["0.png"])
    data = MVTecCategory(root)
    assert len(data.train_paths()) == 1
    assert data.defect_types() == []
    with pytest.raises(DatasetError, match="test"):
        data.test_samples()


def test_missing_ground_truth_folder_with_anomalous_types_is_explained(category):
    shutil.rmtree(category / "ground_truth")
    with pytest.raises(DatasetError, match=r"ground_truth.*broken, crack"):
        MVTecCategory(category).test_samples()


def test_missing_folder_suggests_demo_data(tmp_path):
    with pytest.raises(DatasetError, match="no such folder.*rd-edge demo-data") as info:
        MVTecCategory(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(info.value)


def test_missing_train_good_names_the_expected_folder(tmp_path):
    touch_images(tmp_path / "cat" / "test" / "good", ["0.png"])
    with pytest.raises(DatasetError) as info:
        MVTecCategory(tmp_path / "cat")
    assert str(tmp_path / "cat" / "train" / "good") in str(info.value)


def test_empty_train_good_says_no_images(tmp_path):
    (tmp_path / "cat" / "train" / "good").mkdir(parents=True)
    (tmp_path / "cat" / "train" / "good" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="found none"):
        MVTecCategory(tmp_path / "cat")


def test_dataset_root_instead_of_category_lists_the_categories(category):
    with pytest.raises(DatasetError, match=r"categories bottle; pass one of them"):
        MVTecCategory(category.parent)


def test_jpeg_images_find_their_png_masks(tmp_path: Path):
    """Asymmetric formats (issue 28): JPEG test images (as some MVTec-style exports ship) with the
    usual <stem>_mask.png masks; each defect image gets its own mask, good ones none."""
    root = tmp_path / "screw"
    touch_images(root / "train" / "good", ["000.png"])
    for folder, names in [
        (root / "test" / "good", ["000.jpg"]),
        (root / "test" / "thread", ["000.jpg", "001.JPG"]),
    ]:
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            cv2.imwrite(str(folder / name.replace(".JPG", ".jpg")), np.zeros((4, 4, 3), np.uint8))
            (folder / name.replace(".JPG", ".jpg")).rename(folder / name)
    touch_images(root / "ground_truth" / "thread", ["000_mask.png", "001_mask.png"])
    samples = MVTecCategory(root).test_samples()
    got = [(s.defect_type, s.path.name, s.mask_path.name if s.mask_path else None) for s in samples]
    assert got == [
        ("good", "000.jpg", None),
        ("thread", "000.jpg", "000_mask.png"),
        ("thread", "001.JPG", "001_mask.png"),
    ]
