"""Teacher weights: official torchvision files, or random init with re-estimated BatchNorm."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Union

import torch
from torch import Tensor, nn

from rd_edge.core.errors import CheckpointError


def load_teacher_weights(teacher: nn.Module, path: Union[str, Path]) -> None:
    """Load a torchvision ResNet state dict (e.g. ``wide_resnet50_2-*.pth``) into the teacher.

    Keys the teacher does not have (``fc.*``, ``layer4.*``) are ignored; teacher keys missing
    from the file or of another shape are an error that names them.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"teacher weights {path} not found; pass a torchvision .pth file "
                              f"or `--teacher-weights none` for a random teacher")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or truncated files
        raise CheckpointError(f"cannot read teacher weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"teacher weights {path}: expected a state dict, found {type(state).__name__}")
    expected = teacher.state_dict()
    missing = [k for k in expected if k not in state]
    misshaped = [f"{k} (expected {tuple(v.shape)}, found {tuple(state[k].shape)})"
                 for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or misshaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys: {', '.join(missing[:8])}"
                            + (" ..." if len(missing) > 8 else ""))
        if misshaped:
            problems.append(f"{len(misshaped)} mis-shaped keys: {', '.join(misshaped[:8])}"
                            + (" ..." if len(misshaped) > 8 else ""))
        raise CheckpointError(f"teacher weights {path} do not fit this backbone: {'; '.join(problems)}. "
                              f"Is the file for the backbone you chose?")
    teacher.load_state_dict({k: state[k] for k in expected})


def reestimate_batchnorm(teacher: nn.Module, batches: Iterable[Tensor]) -> None:
    """Re-estimate a randomly initialised teacher's BatchNorm statistics on normalized images.

    In train mode each BatchNorm normalizes with the batch's statistics, so one pass is enough;
    ``momentum=None`` makes the running statistics a plain average over the batches.
    """
    warnings.warn("random teacher (--teacher-weights none): BatchNorm statistics are re-estimated on "
                  "the training images, but detection quality will be far below an ImageNet teacher",
                  stacklevel=2)
    norms = [m for m in teacher.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    teacher.train()
    with torch.no_grad():
        for batch in batches:
            teacher(batch)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    teacher.eval()
