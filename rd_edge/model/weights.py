"""Teacher weights: the official torchvision ImageNet files (downloaded once into torch's hub
cache, hash-checked), a local file, or random init with re-estimated BatchNorm (``none``)."""

from __future__ import annotations

import os
import re
import socket
import warnings
from pathlib import Path
from typing import Dict, Iterable, Optional, Union
from urllib.error import HTTPError, URLError

import torch
from torch import Tensor, nn

from rd_edge.core.errors import CheckpointError, RdEdgeError
from rd_edge.core.files import sha256_file

# The files RD4AD itself loads through torchvision (IMAGENET1K_V1 weights).
TORCHVISION_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "wide_resnet50_2": "wide_resnet50_2-95faca4d.pth",
}
DEFAULT_WEIGHTS_URL = "https://download.pytorch.org/models"
WEIGHTS_URL_ENV = "RD_EDGE_WEIGHTS_URL"  # base URL of an internal mirror; the file name is appended
IMAGENET, NONE = "imagenet", "none"
DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation: a blocked network fails instead of hanging
_HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")  # torchvision's: the hex after the last '-' of the name


class TeacherDownloadError(RdEdgeError):
    """The ImageNet teacher weights could not be downloaded or failed their hash check."""


def weights_cache_dir() -> Path:
    """Where torch's hub keeps downloaded weights: $TORCH_HOME/hub/checkpoints (torch.hub.get_dir())."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_weights(backbone: str, base_url: Optional[str] = None, progress: bool = True) -> Path:
    """The cached torchvision ImageNet file of ``backbone``, downloaded (hash-checked) if missing.

    ``base_url`` (else $RD_EDGE_WEIGHTS_URL, else download.pytorch.org) gets the file name appended.
    A failed or interrupted download leaves nothing in the cache (torch writes a temporary file
    and renames it only after the hash check).
    """
    name = TORCHVISION_FILES[backbone]
    cached = weights_cache_dir() / name
    if cached.is_file():
        return cached
    base = base_url or os.environ.get(WEIGHTS_URL_ENV) or DEFAULT_WEIGHTS_URL
    url = f"{base.rstrip('/')}/{name}"
    hint = (
        f"put {name} in {cached.parent} (or give the path of the file), or use teacher weights "
        f"'{NONE}' to train offline with a random teacher (far weaker)"
    )
    cached.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(
            url, str(cached), hash_prefix=_HASH_PREFIX.search(name).group(1), progress=progress
        )
    except HTTPError as exc:
        raise TeacherDownloadError(
            f"cannot download the ImageNet teacher {name} from {url}: HTTP {exc.code} {exc.reason}; {hint}"
        ) from None
    except (URLError, OSError) as exc:  # refused, DNS, timeout, interrupted transfer
        reason = getattr(exc, "reason", None) or exc
        raise TeacherDownloadError(
            f"cannot download the ImageNet teacher {name} from {url}: {reason}; {hint}"
        ) from None
    except RuntimeError as exc:  # torch's hash check
        if "hash" not in str(exc):
            raise
        raise TeacherDownloadError(
            f"the download of {name} from {url} failed its hash check (expected a "
            f"sha256 starting {_HASH_PREFIX.search(name).group(1)}); nothing was "
            f"cached. Check the mirror's copy; {hint}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return cached


def resolve_teacher(
    spec: str, backbone: str, base_url: Optional[str] = None, progress: bool = True
) -> Optional[Dict[str, str]]:
    """``imagenet`` | a .pth path | ``none`` -> the weight file's record {source, file, sha256, path},
    or None for a random teacher. Downloads the ImageNet file on first use."""
    if spec.lower() == NONE:
        return None
    if spec.lower() == IMAGENET:
        path, source = imagenet_weights(backbone, base_url, progress), IMAGENET
    else:
        path, source = Path(spec), "file"
        if not path.is_file():
            raise CheckpointError(
                f"teacher weights {path} not found; expected '{IMAGENET}' (the torchvision "
                f"ImageNet file, downloaded once), a torchvision .pth file, or '{NONE}' "
                f"for a random teacher"
            )
    return {"source": source, "file": path.name, "sha256": sha256_file(path), "path": str(path.resolve())}


def load_teacher_weights(teacher: nn.Module, path: Union[str, Path]) -> None:
    """Load a torchvision ResNet state dict (e.g. ``wide_resnet50_2-*.pth``) into the teacher.

    Keys the teacher does not have (``fc.*``, ``layer4.*``) are ignored; teacher keys missing
    from the file or of another shape are an error that names them.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"teacher weights {path} not found; expected a torchvision .pth file "
            f"or '{NONE}' for a random teacher"
        )
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
    misshaped = [
        f"{k} (expected {tuple(v.shape)}, found {tuple(state[k].shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or misshaped:
        problems = []
        if missing:
            problems.append(
                f"{len(missing)} missing keys: {', '.join(missing[:8])}"
                + (" ..." if len(missing) > 8 else "")
            )
        if misshaped:
            problems.append(
                f"{len(misshaped)} mis-shaped keys: {', '.join(misshaped[:8])}"
                + (" ..." if len(misshaped) > 8 else "")
            )
        raise CheckpointError(
            f"teacher weights {path} do not fit this backbone: {'; '.join(problems)}. "
            f"Is the file for the backbone you chose?"
        )
    teacher.load_state_dict({k: state[k] for k in expected})


def reestimate_batchnorm(teacher: nn.Module, batches: Iterable[Tensor]) -> None:
    """Re-estimate a randomly initialised teacher's BatchNorm statistics on normalized images.

    In train mode each BatchNorm normalizes with the batch's statistics, so one pass is enough;
    ``momentum=None`` makes the running statistics a plain average over the batches.
    """
    warnings.warn(
        "random teacher (--teacher-weights none): BatchNorm statistics are re-estimated on "
        "the training images, but detection quality will be far below an ImageNet teacher",
        stacklevel=2,
    )
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
