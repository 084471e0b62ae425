"""`model.pt`: a plain dict of tensors and builtins that ``torch.load(weights_only=True)`` reads.

Layout (format_version 1)::

    {"format": "rd_edge.checkpoint", "format_version": 1,
     "config": {"model": ModelConfig.to_dict(), "train": {...}},
     "state_dict": {...},                       # teacher.*, ocbe.*, student.*
     "score_stats": {"min", "max", "mean", "std", "count"} | None,
     "threshold": float | None,
     "training": {"step", "total_steps", "completed", "final_loss", "seconds", "data_dir", ...},
     "resume": {"optimizer": ..., "generator": ByteTensor} | None}

Loading never unpickles code.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Union

import torch

from .core.errors import CheckpointError
from .core.tiling import Tiling
from .model import ModelConfig, RDInference

CHECKPOINT_FORMAT = "rd_edge.checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("config", "state_dict", "training")


def save_checkpoint(path: Union[str, Path], payload: Dict[str, Any]) -> None:
    """Write atomically: a temp file in the same folder, then rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Read and validate a checkpoint dict; any problem is a CheckpointError that says what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train one with `rd-train --data DIR --out {path}`")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, random bytes...
        cause = (str(exc).splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path} is not a readable rd-edge checkpoint (corrupt, truncated or "
                              f"not made by rd-train): {type(exc).__name__}: {cause}") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an rd-edge checkpoint (expected a dict with "
                              f"format={CHECKPOINT_FORMAT!r}); was it written by rd-train?")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this rd-edge reads up to "
                              f"{FORMAT_VERSION}. Upgrade rd-edge.")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path} lacks the entries {missing}; the file is incomplete")
    return data


def model_config(data: Dict[str, Any]) -> ModelConfig:
    """The ModelConfig stored in a checkpoint dict."""
    try:
        return ModelConfig(**data["config"]["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint has an invalid model config: {exc}") from exc


def build_model(data: Dict[str, Any]) -> RDInference:
    """Rebuild the fused inference module from a checkpoint dict, in eval mode."""
    model = RDInference(model_config(data))
    try:
        model.rd.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit the {model.config.backbone} model: "
                              f"{str(exc).splitlines()[0]}") from exc
    return model.eval()


def load_checkpoint(path: Union[str, Path]) -> RDInference:
    """``model.pt`` -> RDInference in eval mode: float32 [N,3,H,W] RGB in [0,1] -> (map [N,1,H,W], score [N]).

    The module carries the checkpoint's ``threshold``, ``score_stats`` and ``tiling`` (a Tiling
    for models trained on tiles, else None) as attributes.
    """
    data = read_checkpoint(path)
    model = build_model(data)
    model.threshold = data.get("threshold")
    model.score_stats = data.get("score_stats")
    model.tiling = Tiling.from_dict(data["tiling"], str(path)) if data.get("tiling") else None
    model.requires_grad_(False)
    return model
