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
