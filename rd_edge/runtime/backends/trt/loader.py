"""Loading a TensorRT plan: the sidecar is checked against this machine before TensorRT sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from rd_edge.core.choices import BackendName
from rd_edge.core.sidecar import EngineSidecar, check_compatible

from ..base import register_backend, reject_unknown_options
from . import util
from .runner import TensorRTRunner


@register_backend(
    BackendName.TRT.value, suffixes=(".engine", ".plan"), probe=util.probe, aliases=("tensorrt",)
)
def load_tensorrt(
    path: Path, device: Optional[str] = None, device_id: Optional[int] = None, **unknown: Any
) -> TensorRTRunner:
    """Check the sidecar against this machine, then deserialize the plan on ``device_id``."""
    reject_unknown_options(BackendName.TRT.value, unknown, ("device", "device_id"))
    index = util.device_index(device, device_id)
    sidecar = EngineSidecar.read(path)
    check_compatible(
        sidecar,
        path,
        util.tensorrt_version(),
        util.gpu_identity(index),
        util.tensorrt_install_hint(sidecar.tensorrt_version),
    )
    return TensorRTRunner(path, sidecar, index)
