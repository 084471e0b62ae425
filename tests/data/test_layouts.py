"""Every layout rd-edge reads (MVTec AD, MVTec AD 2, VisA, plain folders): found from its files,
written by `rd-edge demo-data --layout`, trained and evaluated; a missing part is named."""

import csv
import shutil
import warnings

import pytest

from rd_edge.cli.main import main as rd_edge_main
from rd_edge.core.errors import DatasetError
from rd_edge.data import open_dataset

N_TRAIN, N_GOOD, N_PER_DEFECT, N_DEFECT_TYPES = 12, 5, 2, 4


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """{layout: what --data (or --good) names}, written by the CLI from the same demo images."""
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in ("mvtec", "mvtec2", "visa", "folders"):
        assert (
            rd_edge_main(
                [
                    "demo-data",
                    str(root / layout),
                    "--categories",
                    "weave",
                    "--image-size",
                    "64",
                    "--n-train",
                    str(N_TRAIN),
                    "--n-test-good",
                    str(N_GOOD),
                    "--n-test-per-defect",
                    str(N_PER_DEFECT),
                    "--layout",
                    layout,
                ]
            )
            == 0
        )
        out[layout] = root / layout / "weave"
    return out


def _open(layouts, layout):
    folder = layouts[layout]
    if layout == "folders":
        return open_dataset(good=folder / "good", defect=folder / "defect", masks=folder / "masks")
    return open_dataset(folder)


@pytest.mark.parametrize("layout", ["mvtec", "mvtec2", "visa", "folders"])
def test_layout_is_found_with_every_image_and_mask(layouts, layout):
    data = _open(layouts, layout)
    assert data.layout == layout
    samples = data.test_samples()
    defects = [s for s in samples if s.is_anomalous]
    assert len(defects) == N_PER_DEFECT * N_DEFECT_TYPES
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in defects)
    n_train = len(data.train_paths()) + len(data.validation_paths())
    n_good_test = len(samples) - len(defects)
    if layout == "folders":  # the good images are split: every fifth one is a test image
        assert n_train + n_good_test == N_TRAIN + N_GOOD and n_good_test == 4
    else:
        assert (n_train, n_good_test) == (N_TRAIN, N_GOOD)
    if layout == "mvtec2":
        assert len(data.validation_paths()) == 2


def test_a_folder_of_images_as_data_is_good_images_only(layouts):
    data = open_dataset(layouts["folders"] / "good")
    assert data.layout == "folders" and len(data.train_paths()) == N_TRAIN + N_GOOD
    with pytest.raises(DatasetError, match="defect images"):
        data.test_samples()


def test_missing_parts_are_named(layouts, tmp_path):
    mvtec2 = tmp_path / "mvtec2"
    shutil.copytree(layouts["mvtec2"], mvtec2)
    shutil.rmtree(mvtec2 / "test_public" / "ground_truth")
    with pytest.raises(DatasetError, match=r"test_public/ground_truth/bad"):
        open_dataset(mvtec2).test_samples()
    shutil.rmtree(mvtec2 / "test_public" / "bad")
    with pytest.raises(DatasetError, match="test_public/bad"):
        open_dataset(mvtec2).test_samples()

    visa = tmp_path / "visa"
    shutil.copytree(layouts["visa"].parent, visa)
    split = visa / "split_csv" / "1cls.csv"
    with pytest.raises(DatasetError, match="objects other, weave; pass one of them"):
        _write_rows(split, [["other", "train", "normal", "weave/Data/Images/Normal/train_000.png", ""]])
        open_dataset(visa)
    split.write_text("object,image\nweave,x.png\n")
    with pytest.raises(DatasetError, match="columns"):
        open_dataset(visa / "weave")
    (visa / "weave" / "Data" / "Images" / "Normal" / "train_000.png").unlink()
    shutil.copy(layouts["visa"].parent / "split_csv" / "1cls.csv", split)
    with pytest.raises(DatasetError, match="do not exist.*train_000.png"):
        open_dataset(visa / "weave")

    with pytest.raises(DatasetError, match="masks were given without defect images"):
        open_dataset(good=layouts["folders"] / "good", masks=layouts["folders"] / "masks")
    with pytest.raises(DatasetError, match="expected a folder of defect images at .*nowhere"):
        open_dataset(good=layouts["folders"] / "good", defect=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="train/good"):
        open_dataset(tmp_path)  # an empty folder: the MVTec AD message says what to put there


def _write_rows(split, rows):
    with open(split, "a", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["mvtec", "mvtec2", "visa", "folders"])
def test_each_layout_trains_and_evaluates(layouts, layout, tmp_path):
    from rd_edge.cli.evaluate import main as eval_main
    from rd_edge.cli.train import main as train_main

    folder = layouts[layout]
    data = (
        ["--good", str(folder / "good"), "--defect", str(folder / "defect"), "--masks", str(folder / "masks")]
        if layout == "folders"
        else ["--data", str(folder)]
    )
    out = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random teacher's warning
        assert (
            train_main(
                data
                + [
                    "--backbone",
                    "resnet18",
                    "--image-size",
                    "64",
                    "--steps",
                    "2",
                    "--batch-size",
                    "4",
                    "--teacher-weights",
                    "none",
                    "--device",
                    "cpu",
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
    import torch

    assert torch.load(out, weights_only=True)["training"]["layout"] == layout
    json_out = tmp_path / "metrics.json"
    assert eval_main([str(out)] + data + ["--device", "cpu", "--quiet", "--json", str(json_out)]) == 0
    import json

    metrics = json.loads(json_out.read_text())
    assert metrics["n_images"] == len(_open(layouts, layout).test_samples())
    assert 0.0 <= metrics["image_auroc"] <= 1.0 and 0.0 <= metrics["pixel_auroc"] <= 1.0


# --- dataset paths and masks that cannot be trusted (issue 21, cases 3, 7, 10) ----------------------


def test_visa_rows_may_not_leave_the_dataset_root(layouts, tmp_path):
    visa = tmp_path / "visa"
    shutil.copytree(layouts["visa"].parent, visa)
    (tmp_path / "outside").mkdir()
    secret = tmp_path / "outside" / "secret.png"
    shutil.copy(next((visa / "weave").rglob("*.png")), secret)
    split = visa / "split_csv" / "1cls.csv"
    original = split.read_text()
    for bad in ("../outside/secret.png", str(secret)):
        for row in (["weave", "train", "normal", bad, ""], ["weave", "test", "anomaly", bad, bad]):
            split.write_text(original)
            _write_rows(split, [row])
            with pytest.raises(DatasetError, match="outside the dataset folder"):
                open_dataset(visa / "weave").test_samples()


def _folders_with_nested_defects(layouts, tmp_path):
    """defect/a/x.png and defect/b/x.png (different images), masks/a/x.png and masks/b/x.png."""
    import cv2
    import numpy as np

    src = layouts["folders"]
    defect, masks = tmp_path / "defect", tmp_path / "masks"
    images = sorted((src / "defect").glob("*.png"))[:2]
    for sub, image in zip("ab", images):
        (defect / sub).mkdir(parents=True)
        (masks / sub).mkdir(parents=True)
        shutil.copy(image, defect / sub / "x.png")
        h, w = cv2.imread(str(image)).shape[:2]
        mask = np.zeros((h, w), np.uint8)
        mask[: h // 2 if sub == "a" else h // 4] = 255  # a: the top half, b: the top quarter
        cv2.imwrite(str(masks / sub / "x.png"), mask)
    return src / "good", defect, masks


def test_folder_masks_are_matched_by_relative_path(layouts, tmp_path):
    good, defect, masks = _folders_with_nested_defects(layouts, tmp_path)
    samples = [
        s for s in open_dataset(good=good, defect=defect, masks=masks).test_samples() if s.is_anomalous
    ]
    assert {
        s.path.relative_to(defect).as_posix(): s.mask_path.relative_to(masks).as_posix() for s in samples
    } == {"a/x.png": "a/x.png", "b/x.png": "b/x.png"}


def test_some_masks_missing_is_an_error_none_at_all_is_allowed(layouts, tmp_path):
    good, defect, masks = _folders_with_nested_defects(layouts, tmp_path)
    (masks / "b" / "x.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 2 anomalous test images have no mask.*b/x.png"):
        open_dataset(good=good, defect=defect, masks=masks).test_samples()
    mvtec = tmp_path / "mvtec"
    shutil.copytree(layouts["mvtec"], mvtec)
    next((mvtec / "ground_truth").rglob("*_mask.png")).unlink()
    with pytest.raises(DatasetError, match="have no mask"):
        open_dataset(mvtec).test_samples()
    for mask in (mvtec / "ground_truth").rglob("*_mask.png"):
        mask.unlink()
    assert all(
        s.mask_path is None for s in open_dataset(mvtec).test_samples()
    )  # no masks at all: image metrics


def test_a_mask_of_another_size_is_an_error(layouts, tmp_path):
    import cv2
    import numpy as np

    from rd_edge.data.mvtec import read_sample_masks

    good, defect, masks = _folders_with_nested_defects(layouts, tmp_path)
    samples = open_dataset(good=good, defect=defect, masks=masks).test_samples()
    assert read_sample_masks(samples, (32, 32)).shape == (len(samples), 32, 32)
    cv2.imwrite(str(masks / "a" / "x.png"), np.full((16, 300), 255, np.uint8))
    with pytest.raises(DatasetError, match=r"is 300x16 pixels, its image .* is 64x64"):
        read_sample_masks(samples, (64, 64))


def test_save_maps_keeps_one_file_per_image(layouts, tmp_path):
    """rd-eval --save-maps: defect/a/x.png and defect/b/x.png wrote the same defect/x.npy."""
    import numpy as np

    from rd_edge.data.mvtec import Sample
    from rd_edge.evaluate import write_maps

    _, defect, masks = _folders_with_nested_defects(layouts, tmp_path)
    samples = [Sample(defect / sub / "x.png", "defect", masks / sub / "x.png") for sub in "ab"]
    maps = np.stack([np.full((64, 64), 1.0, np.float32), np.full((64, 64), 2.0, np.float32)])
    write_maps(tmp_path / "maps", samples, maps, np.array([1.0, 2.0]), None, 1.5)
    assert sorted(
        p.relative_to(tmp_path / "maps").as_posix() for p in (tmp_path / "maps").rglob("*.npy")
    ) == ["defect/a/x.npy", "defect/b/x.npy"]
    assert float(np.load(tmp_path / "maps" / "defect" / "b" / "x.npy").max()) == 2.0
    assert len(list((tmp_path / "maps").rglob("*.png"))) == 2


@pytest.mark.parametrize("layout", ["mvtec2", "folders"])
def test_a_layout_is_never_written_over_a_folder_that_holds_files(tmp_path, layout):
    """The user's own files in the target are kept and the writer says to choose another folder."""
    from rd_edge.core.errors import DatasetError
    from rd_edge.data.demo_layouts import write_demo_layout

    mine = tmp_path / "weave" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    with pytest.raises(DatasetError, match="exists and is not empty"):
        write_demo_layout(
            tmp_path, layout, ["weave"], image_size=32, n_train=2, n_test_good=1, n_test_per_defect=1
        )
    assert mine.read_text() == "mine" and sorted(p.name for p in (tmp_path / "weave").iterdir()) == [
        "notes.txt"
    ]
