"""The TensorRT engine's JSON sidecar: what a plan was built with, readable without TensorRT or a GPU.

``model.engine.json`` beside ``model.engine`` records the TensorRT version, the GPU and the
model's ``rd_edge`` metadata. The builder writes it; the runtime reads it and refuses a plan
built for another TensorRT version or GPU before TensorRT sees it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

from .errors import BackendError, MetadataError
from .files import PathLike, write_text_atomic
from .metadata import METADATA_KEY, ModelMetadata

REBUILD_HINT = "rd-export model.onnx --engine model.engine"
_SIDECAR_FIELDS = (
    "tensorrt_version",
    "gpu_name",
    "compute_capability",
    "precision",
    "min_batch",
    "max_batch",
    "onnx_sha256",
    METADATA_KEY,
)
# Written since the device identity was recorded; older sidecars lack them (see check_compatible).
_DEVICE_FIELDS = ("sm_count", "total_memory_mb", "device_model")
# Written since the profile's opt batch and the batch kind were recorded; older sidecars lack them.
_PROFILE_FIELDS = ("opt_batch", "dynamic_batch")


class GpuInfo(NamedTuple):
    """The device a plan is built for or run on.

    Jetson Orin Nano, NX and AGX all report the name "Orin" and compute capability 8.7; their
    SM counts and the board's device-tree model (``/proc/device-tree/model``) tell them apart.
    """

    name: str
    compute_capability: str  # "major.minor"
    sm_count: Optional[int] = None
    total_memory_mb: Optional[int] = None
    device_model: Optional[str] = None  # Jetson board, e.g. "NVIDIA Jetson AGX Orin Developer Kit"

    def describe(self) -> str:
        extra = [
            f"{self.sm_count} SMs" if self.sm_count else "",
            f"{self.total_memory_mb} MiB" if self.total_memory_mb else "",
            self.device_model or "",
        ]
        details = ", ".join(e for e in extra if e)
        return f"{self.name} compute {self.compute_capability}" + (f" ({details})" if details else "")


MAX_ENGINE_BATCH = 4096  # far above any real profile; a larger max_batch is a damaged sidecar


def sidecar_path(plan: PathLike) -> Path:
    """The sidecar of ``plan``: the plan's file name plus ``.json`` (model.engine.json)."""
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


def format_compute_capability(value: Any) -> str:
    """ "8.7" from "8.7", (8, 7) or [8, 7]; MetadataError for anything else."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}.{value[1]}"
    if isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value):
        return value
    raise MetadataError(f"compute_capability must be 'major.minor' or [major, minor], found {value!r}")


@dataclass
class EngineSidecar:
    """What a TensorRT plan was built with, and the model's ``rd_edge`` metadata."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor"
    precision: str  # fp32 | fp16 | int8
    min_batch: int
    max_batch: int
    onnx_sha256: str
    metadata: ModelMetadata
    sm_count: Optional[int] = None
    total_memory_mb: Optional[int] = None
    device_model: Optional[str] = None
    opt_batch: Optional[int] = None  # the batch TensorRT tuned its tactics for (profile opt)
    dynamic_batch: Optional[bool] = None  # False: the graph's batch is fixed at max_batch

    @property
    def static_batch(self) -> bool:
        """True when the engine only runs batch ``max_batch``: built from a fixed-batch graph
        (a sidecar from before the kind was recorded: when min == max, which covers both)."""
        if self.dynamic_batch is not None:
            return not self.dynamic_batch
        return self.min_batch == self.max_batch

    @property
    def gpu(self) -> GpuInfo:
        return GpuInfo(
            self.gpu_name, self.compute_capability, self.sm_count, self.total_memory_mb, self.device_model
        )

    def to_dict(self) -> Dict[str, Any]:
        # Unknown device fields are left out, not null: OpenCV's JSON reader (the C++ example's)
        # fails on null.
        data = {
            k: v
            for k, v in asdict(self).items()
            if k != "metadata" and not (k in _DEVICE_FIELDS + _PROFILE_FIELDS and v is None)
        }
        data[METADATA_KEY] = asdict(self.metadata)
        return data

    def write(self, plan: PathLike) -> Path:
        """Write ``<plan>.json``; returns its path. The engine builder calls this."""
        path = sidecar_path(plan)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "EngineSidecar":
        """Validate the sidecar fields; ``source`` names the file in errors."""
        if not isinstance(data, dict):
            raise MetadataError(f"{source}: expected a JSON object, found {type(data).__name__}")
        missing = [k for k in _SIDECAR_FIELDS if k not in data]
        if missing:
            raise MetadataError(f"{source}: sidecar lacks {missing}; rebuild the engine: {REBUILD_HINT}")
        batches = (data["min_batch"], data["max_batch"])
        if not all(type(b) is int and 1 <= b <= MAX_ENGINE_BATCH for b in batches) or batches[0] > batches[1]:
            raise MetadataError(
                f"{source}: min_batch/max_batch must be integers with "
                f"1 <= min <= max <= {MAX_ENGINE_BATCH}, found {list(batches)}"
            )
        try:
            cc = format_compute_capability(data["compute_capability"])
        except MetadataError as exc:
            raise MetadataError(f"{source}: {exc}") from None
        meta = ModelMetadata.from_json(json.dumps(data[METADATA_KEY]), source=source)
        device = {k: data.get(k) for k in _DEVICE_FIELDS}
        for key in ("sm_count", "total_memory_mb"):
            value = device[key]
            if value is not None and not (isinstance(value, int) and value > 0):
                raise MetadataError(f"{source}: {key} must be a positive integer or null, found {value!r}")
        if device["device_model"] is not None and not isinstance(device["device_model"], str):
            raise MetadataError(
                f"{source}: device_model must be a string or null, found {device['device_model']!r}"
            )
        opt, dynamic = data.get("opt_batch"), data.get("dynamic_batch")
        if opt is not None and not (isinstance(opt, int) and batches[0] <= opt <= batches[1]):
            raise MetadataError(
                f"{source}: opt_batch must be an integer in min_batch..max_batch "
                f"{list(batches)}, found {opt!r}"
            )
        if dynamic is not None and not isinstance(dynamic, bool):
            raise MetadataError(f"{source}: dynamic_batch must be true, false or absent, found {dynamic!r}")
        return cls(
            str(data["tensorrt_version"]),
            str(data["gpu_name"]),
            cc,
            str(data["precision"]),
            data["min_batch"],
            data["max_batch"],
            str(data["onnx_sha256"]),
            meta,
            **device,
            opt_batch=opt,
            dynamic_batch=dynamic,
        )

    @classmethod
    def read(cls, plan: PathLike) -> "EngineSidecar":
        """Read and validate the sidecar of ``plan``; MetadataError when missing or invalid."""
        path = sidecar_path(plan)
        if not path.is_file():
            raise MetadataError(
                f"{plan} has no sidecar {path.name} (it carries the TensorRT version, "
                f"GPU and rd_edge metadata); build the engine with rd-export, which "
                f"writes both: {REBUILD_HINT}"
            )
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(f"cannot read engine sidecar {path}: {exc}") from exc
        except RecursionError:
            raise MetadataError(f"cannot read engine sidecar {path}: JSON nested too deep") from None
        return cls.from_dict(data, source=str(path))


def check_compatible(
    sidecar: EngineSidecar,
    plan: PathLike,
    tensorrt_version: str,
    gpu: GpuInfo,
    install_hint: Optional[str] = None,
) -> None:
    """BackendError unless the plan was built by this TensorRT version for this GPU.

    TensorRT plans are specific to the TensorRT version and GPU model that built them. The GPU
    must match by name and compute capability, and by SM count and board (device-tree model)
    where both sides recorded them: Jetson Orin Nano/NX/AGX share name and capability. A
    sidecar from before the board was recorded is refused on a Jetson (it cannot say which
    Orin built it) and accepted elsewhere (the name tells discrete GPUs apart).
    ``install_hint``: how to install the TensorRT that built the plan (named when only the
    version differs).
    """
    found = []
    if sidecar.tensorrt_version != tensorrt_version:
        found.append(f"TensorRT {sidecar.tensorrt_version} (running {tensorrt_version})")
    built = sidecar.gpu
    if (
        (built.name, built.compute_capability) != (gpu.name, gpu.compute_capability)
        or (built.sm_count and gpu.sm_count and built.sm_count != gpu.sm_count)
        or (built.device_model or gpu.device_model)
        and built.device_model != gpu.device_model
    ):
        unrecorded = (
            " (a sidecar from before boards were recorded)"
            if gpu.device_model and not built.device_model
            else ""
        )
        found.append(f"GPU {built.describe()}{unrecorded} (running {gpu.describe()})")
    if found:
        raise BackendError(
            f"{plan} was built for {' and '.join(found)}; a TensorRT plan only runs "
            f"with the TensorRT version and GPU that built it. Rebuild it on this "
            f"machine from the ONNX model: {REBUILD_HINT}"
            + (
                f"; or run it as is with {install_hint}"
                if install_hint and len(found) == 1 and not found[0].startswith("GPU")
                else ""
            )
        )
