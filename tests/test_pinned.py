"""Behaviour users rely on, pinned exactly (each of these caught a realistic one-line bug that
every parity test missed, because training, export and runtime agreed with each other)."""

import pytest
import torch

from rd_edge.checkpoint import read_checkpoint, save_checkpoint
from rd_edge.core.errors import CheckpointError
from rd_edge.core.metadata import ModelMetadata
from rd_edge.model import ModelConfig
from rd_edge.model.rd import IMAGENET_MEAN, IMAGENET_STD, Normalize, RDInference


def test_imagenet_constants_are_rgb_ordered_everywhere():
    # torchvision's ImageNet statistics, R, G, B: a BGR-ordered mean trains, exports and runs
    # consistently and only costs detection quality, so nothing else would notice.
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    cfg = ModelConfig(backbone="resnet18", image_size=(64, 64))
    assert tuple(cfg.mean) == IMAGENET_MEAN and tuple(cfg.std) == IMAGENET_STD
    meta = ModelMetadata(
        backbone="resnet18",
        image_size=[64, 64],
        threshold=None,
        score_stats=None,
        checkpoint_sha256="0" * 64,
        exporter_version="test",
    )
    assert meta.mean == list(IMAGENET_MEAN) and meta.std == list(IMAGENET_STD)


def test_pure_red_pixel_through_the_models_normalize():
    model = RDInference(ModelConfig(backbone="resnet18", image_size=(64, 64)))
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0  # RGB input: R = 1
    out = model.normalize(red)[0, :, 0, 0]
    want = torch.tensor([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225])
    torch.testing.assert_close(out, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        Normalize(IMAGENET_MEAN, IMAGENET_STD)(red)[0, :, 1, 1], want, rtol=0, atol=1e-6
    )


class _WritesSentinel:
    """Unpickling this object calls Path.write_text: code execution from a model file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import pathlib

        return pathlib.Path.write_text, (pathlib.Path(self.path), "pwned")


def test_checkpoint_with_a_pickle_payload_is_refused_and_runs_nothing(tmp_path):
    sentinel = tmp_path / "sentinel.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "rd-edge-checkpoint", "payload": _WritesSentinel(str(sentinel))}, evil)
    with pytest.raises(CheckpointError, match="not a readable rd-edge checkpoint"):
        read_checkpoint(evil)
    assert not sentinel.exists()  # weights_only=True: the reduce call never ran


def test_checkpoint_round_trip_stays_plain_data(tmp_path):
    # What save writes must stay loadable with weights_only=True (no pickled classes).
    path = tmp_path / "m.pt"
    save_checkpoint(
        path,
        {"config": {"model": {}}, "state_dict": {"w": torch.ones(2)}, "score_stats": None, "threshold": None},
    )
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(data["state_dict"]["w"], torch.ones(2))


def test_default_blur_is_sigma_4_with_33_taps_like_rd4ad():
    cfg = ModelConfig(backbone="resnet18", image_size=(64, 64))
    assert cfg.blur_sigma == 4.0
    kernel = RDInference(cfg).head.blur.kernel.flatten()
    assert kernel.numel() == 33 and float(kernel.sum()) == pytest.approx(1.0, abs=1e-6)
    x = torch.arange(-16, 17, dtype=torch.float64)
    want = torch.exp(-0.5 * (x / 4.0) ** 2)
    torch.testing.assert_close(kernel.double(), want / want.sum(), rtol=0, atol=1e-7)
