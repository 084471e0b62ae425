"""Builders shared by the tests: small checkpoints and demo datasets made on the spot."""
from __future__ import annotations

from pathlib import Path

import torch

from rd_edge.checkpoint import save_checkpoint
from rd_edge.model import ModelConfig, ReverseDistillation

SCORE_STATS = {"min": 0.5, "max": 1.5, "mean": 1.0, "std": 0.1, "count": 5}


def make_checkpoint(path: Path, backbone: str = "resnet18", size: int = 64, seed: int = 0,
                    data_dir: str = None) -> Path:
    """A checkpoint with random weights and non-trivial BatchNorm statistics (no training)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(backbone=backbone, image_size=(size, size))
    rd = ReverseDistillation(backbone).eval()
    for m in rd.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # so BatchNorm folding is really exercised
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    save_checkpoint(path, {
        "config": {"model": cfg.to_dict(), "train": {"seed": seed}},
        "state_dict": rd.state_dict(),
        "score_stats": dict(SCORE_STATS),
        "threshold": 1.2,
        "training": {"step": 0, "total_steps": 0, "completed": True, "data_dir": data_dir},
        "resume": None,
    })
    return path


def unprivileged() -> list:
    """Command prefix that makes root obey file modes (no CAP_DAC_OVERRIDE), as a normal user does,
    so tests of read-only folders mean the same as root (CI) and as a user."""
    import os

    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def one_line_error(err: str) -> bool:
    """What every command prints for a user error: one 'error: ...' line, no traceback."""
    err = err.strip()
    return err.startswith("error: ") and "\n" not in err and "Traceback" not in err


def jpeg_bomb(size: int = 20000) -> bytes:
    """A valid 8x8 JPEG whose frame header says size x size: ~630 bytes, 1.2 GB if decoded in full."""
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])
    raw = bytearray(data.tobytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5:sof + 9] = size.to_bytes(2, "big") * 2
    return bytes(raw)
