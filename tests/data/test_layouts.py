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
        assert rd_edge_main(["demo-data", str(root / layout), "--categories", "weave", "--image-size", "64",
                             "--n-train", str(N_TRAIN), "--n-test-good", str(N_GOOD),
                             "--n-test-per-defect", str(N_PER_DEFECT), "--layout", layout]) == 0
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
    data = (["--good", str(folder / "good"), "--defect", str(folder / "defect"), "--masks", str(folder / "masks")]
            if layout == "folders" else ["--data", str(folder)])
    out = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random teacher's warning
        assert train_main(data + ["--backbone", "resnet18", "--image-size", "64", "--steps", "2",
                                  "--batch-size", "4", "--teacher-weights", "none", "--device", "cpu",
                                  "--out", str(out), "--quiet"]) == 0
    import torch

    assert torch.load(out, weights_only=True)["training"]["layout"] == layout
    json_out = tmp_path / "metrics.json"
    assert eval_main([str(out)] + data + ["--device", "cpu", "--quiet", "--json", str(json_out)]) == 0
    import json

    metrics = json.loads(json_out.read_text())
    assert metrics["n_images"] == len(_open(layouts, layout).test_samples())
    assert 0.0 <= metrics["image_auroc"] <= 1.0 and 0.0 <= metrics["pixel_auroc"] <= 1.0
