"""rd-train --data DIR --good REVIEW_DIR: the station's reviewed false alarms join the training images."""

import shutil

import pytest

from rd_edge.cli.train import main as train_main
from rd_edge.core import review
from rd_edge.core.errors import DatasetError
from rd_edge.data import open_dataset
from rd_edge.data.layouts import ExtraGood
from rd_edge.train import TrainConfig, Trainer


@pytest.fixture
def marks(demo_category, tmp_path):
    """Two test images marked false alarm, one marked confirmed defect."""
    folder = tmp_path / "review"
    goods = sorted((demo_category / "test" / "good").glob("*.png"))
    defect = sorted((demo_category / "test" / "hole").glob("*.png"))[0]
    for i, path in enumerate(goods[:2]):
        review.write_mark(folder, review.FALSE_ALARM, "cam", f"g{i}", path.read_bytes(), {"frame": i})
    review.write_mark(folder, review.CONFIRMED, "cam", "d0", defect.read_bytes(), {"frame": 9})
    return folder


def test_reviewed_false_alarms_are_training_images_and_defects_are_not(demo_category, marks):
    plain = open_dataset(demo_category)
    extended = ExtraGood(plain, marks)
    added = extended.train_paths()[len(plain.train_paths()) :]
    assert sorted(p.name for p in added) == ["cam__g0.png", "cam__g1.png"]
    assert extended.test_samples() == plain.test_samples()  # evaluation unchanged


def test_trainer_counts_them(demo_category, marks, tmp_path):
    cfg = TrainConfig(
        data=str(demo_category),
        good=str(marks),
        out=str(tmp_path / "m.pt"),
        backbone="resnet18",
        image_size=64,
        steps=1,
        batch_size=4,
        teacher_weights="none",
        device="cpu",
    )
    with pytest.warns(UserWarning, match="random teacher"):
        trainer = Trainer(cfg, progress=False)
    assert trainer.n_train + trainer.n_hold == 16 + 2


def test_a_review_folder_without_false_alarms_is_refused(demo_category, marks, tmp_path, capsys):
    shutil.rmtree(marks / review.FALSE_ALARM)
    with pytest.raises(DatasetError, match="without false alarms"):
        ExtraGood(open_dataset(demo_category), marks)
    code = train_main(
        [
            "--data",
            str(demo_category),
            "--good",
            str(marks),
            "--backbone",
            "resnet18",
            "--image-size",
            "64",
            "--steps",
            "1",
            "--teacher-weights",
            "none",
            "--out",
            str(tmp_path / "m.pt"),
            "--quiet",
        ]
    )
    assert code == 1 and "without false alarms" in capsys.readouterr().err
