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

import re
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from .core.errors import CheckpointError, OutputError
from .core.files import atomic_path
from .core.metadata import RESIZE_LINEAR
from .core.tiling import Tiling
from .model import ModelConfig, RDInference

CHECKPOINT_FORMAT = "rd_edge.checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("config", "state_dict", "training")


def save_checkpoint(path: Union[str, Path], payload: Dict[str, Any]) -> None:
    """Write atomically: a temp file in the same folder, then rename, so a crash never leaves half a
    file. OutputError (the previous checkpoint intact) when the disk is full or the folder unwritable."""
    path = Path(path)
    data = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, **payload}
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                torch.save(data, f)
    except (OSError, RuntimeError) as exc:  # torch's zip writer reports ENOSPC as RuntimeError
        if isinstance(exc, RuntimeError) and not _is_write_failure(exc):
            raise
        reason = (
            exc.strerror
            if isinstance(exc, OSError) and exc.strerror
            else f"the write failed with {_free_bytes(path) / 2**20:.1f} MiB free on that disk"
        )
        raise OutputError(
            f"cannot write checkpoint {path}: {reason}; the previous checkpoint there (if any) "
            f"is intact: free space or choose another --out, then --resume"
        ) from exc


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return 0


def check_space_for(path: Union[str, Path], nbytes: int) -> None:
    """OutputError when the disk of ``path`` has less than ``nbytes`` free: found before training,
    not at the first save. The old file is replaced only after the new one is whole, so it does
    not count as free."""
    path = Path(path)
    free = _free_bytes(path)
    if free < nbytes:
        raise OutputError(
            f"cannot write checkpoint {path}: it needs about {nbytes / 2**20:.0f} MiB, the "
            f"disk has {free / 2**20:.0f} MiB free; free space or choose another --out"
        )


def _is_write_failure(exc: RuntimeError) -> bool:
    text = str(exc).lower()
    return any(k in text for k in ("file write failed", "no space", "unexpected pos", "file too large"))


def _load_refused_reason(exc: Exception) -> str:
    """One line for torch.load's failure; for a pickle it refuses, the reason why (not cut off)."""
    text = str(exc)
    if "Weights only load failed" in text:
        found = re.search(r"(unsupported GLOBAL [^\s]+|Unsupported global: GLOBAL [^\s]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (
            f"it holds pickled Python objects{what}; loading them could allow arbitrary code execution, "
            f"so rd-edge refuses. Only use checkpoints written by rd-train from a trusted source"
        )
    cause = (text.splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {cause}"


def read_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Read and validate a checkpoint dict; any problem is a CheckpointError that says what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found; train one with `rd-train --data DIR --out {path}`"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, random bytes...
        raise CheckpointError(
            f"{path} is not a readable rd-edge checkpoint (corrupt, truncated or "
            f"not made by rd-train): {_load_refused_reason(exc)}"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an rd-edge checkpoint (expected a dict with "
            f"format={CHECKPOINT_FORMAT!r}); was it written by rd-train?"
        )
    version = data.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:  # True is an int in Python
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this rd-edge reads up to "
            f"{FORMAT_VERSION}. Upgrade rd-edge."
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path} lacks the entries {missing}; the file is incomplete")
    return data


def model_config(data: Dict[str, Any]) -> ModelConfig:
    """The ModelConfig stored in a checkpoint dict. Checkpoints from before the resize rule was
    recorded were trained with "linear" resizing: that is their rule, not today's default."""
    try:
        return ModelConfig(**{"resize": RESIZE_LINEAR, **data["config"]["model"]})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint has an invalid model config: {exc}") from exc


def build_model(data: Dict[str, Any]) -> RDInference:
    """Rebuild the fused inference module from a checkpoint dict, in eval mode."""
    model = RDInference(model_config(data))
    try:
        model.rd.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint weights do not fit the {model.config.backbone} model: {str(exc).splitlines()[0]}"
        ) from exc
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


RANDOM_SCORE_STATS = {"min": 0.5, "max": 1.5, "mean": 1.0, "std": 0.1, "count": 5}


def random_checkpoint(
    path: Union[str, Path],
    backbone: str = "resnet18",
    size: int = 64,
    seed: int = 0,
    data_dir: Optional[str] = None,
) -> Path:
    """A checkpoint with random weights and non-trivial BatchNorm statistics, made without
    training (tests, device checks, benchmarks): every path from export to inference runs on it."""
    from .model import ReverseDistillation

    torch.manual_seed(seed)
    cfg = ModelConfig(backbone=backbone, image_size=(size, size))
    rd = ReverseDistillation(backbone).eval()
    for m in rd.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # so BatchNorm folding is really exercised
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    save_checkpoint(
        path,
        {
            "config": {"model": cfg.to_dict(), "train": {"seed": seed}},
            "state_dict": rd.state_dict(),
            "score_stats": dict(RANDOM_SCORE_STATS),
            "threshold": 1.2,
            "training": {"step": 0, "total_steps": 0, "completed": True, "data_dir": data_dir},
            "resume": None,
        },
    )
    return Path(path)
