"""model.pt: round trip, and clear errors for files that are not checkpoints."""

import pytest
import torch
from helpers import SCORE_STATS, make_checkpoint

from rd_edge import load_checkpoint
from rd_edge.checkpoint import read_checkpoint
from rd_edge.core.errors import CheckpointError


def test_round_trip_restores_weights_config_and_statistics(tmp_path):
    path = make_checkpoint(tmp_path / "m.pt", "resnet18", 64)
    model = load_checkpoint(path)
    assert not model.training
    assert model.config.backbone == "resnet18" and model.config.image_size == (64, 64)
    assert model.threshold == 1.2 and model.score_stats == SCORE_STATS
    raw = torch.load(path, weights_only=True)  # a plain dict: no pickled classes needed
    for k, v in model.rd.state_dict().items():
        assert torch.equal(v, raw["state_dict"][k]), k
    amap, score = model(torch.rand(2, 3, 64, 64))
    assert amap.shape == (2, 1, 64, 64) and score.shape == (2,)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "not a readable rd-edge checkpoint"),
        (b"\x00garbage" * 100, "not a readable rd-edge checkpoint"),
    ],
)
def test_corrupt_file_gives_clear_error(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    path = make_checkpoint(tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        read_checkpoint(path)


def test_foreign_torch_file_is_rejected(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not an rd-edge checkpoint"):
        read_checkpoint(path)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(CheckpointError, match="rd-train"):
        load_checkpoint(tmp_path / "nope.pt")


def test_newer_format_version_is_refused(tmp_path):
    path = make_checkpoint(tmp_path / "m.pt")
    data = torch.load(path, weights_only=True)
    data["format_version"] = 99
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        read_checkpoint(path)
