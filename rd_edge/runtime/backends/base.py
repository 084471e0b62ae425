"""The backend protocol: a loader turns a model file into a Runner; a Runner maps arrays to arrays.

In the spirit of Polygraphy's loader/runner split. Every backend module registers its loader
with :func:`register_backend`, together with the file suffixes it claims; ``backend="auto"``
is decided here, from that registry alone, so no other code branches over model formats.

A loader must import its heavy dependency (onnxruntime, tensorrt, pycuda) inside the loader,
never at module level: registering a backend must stay free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from rd_edge.core.errors import BackendError
from rd_edge.core.files import PathLike, not_a_file
from rd_edge.core.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata

T = TypeVar("T")


class Runner(ABC):
    """A loaded model: ``infer({"image": [N,3,H,W] float32})`` -> ``{"anomaly_map", "score"}``.

    Subclasses set ``name`` (the registry name), ``metadata`` (the model's ``rd_edge``
    metadata), ``input_names``, ``output_names`` and ``max_batch`` (None when unbounded), and
    implement :meth:`infer_impl`. :meth:`infer` does the checks every backend shares, once:
    the feed's name, rank, image size and batch on the way in; names and shapes on the way out.
    """

    name: str = "runner"
    metadata: ModelMetadata
    input_names: Tuple[str, ...]
    output_names: Tuple[str, ...]
    max_batch: Optional[int] = None
    concurrent: bool = False  # True when infer() may run from several threads at once

    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one batch; the returned arrays belong to the caller (not reused buffers)."""
        image = self.check_feed(feed)
        return self.check_outputs(self.infer_impl({INPUT_NAME: image}), int(image.shape[0]))

    @abstractmethod
    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one already-checked batch (the backend's own work)."""

    def check_feed(self, feed: Dict[str, np.ndarray]) -> np.ndarray:
        """The ``image`` array of ``feed``; BackendError unless it is [N,3,H,W] of the model's size
        with 1 <= N <= max_batch."""
        if not isinstance(feed, dict) or INPUT_NAME not in feed:
            found = sorted(feed) if isinstance(feed, dict) else type(feed).__name__
            raise BackendError(
                f"{self.name}: expected a feed {{{INPUT_NAME!r}: [N,3,H,W] array}}, found {found}"
            )
        image = np.asarray(feed[INPUT_NAME])
        expected = (3, self.metadata.height, self.metadata.width)
        limit = self.max_batch or "N"
        if (
            image.ndim != 4
            or tuple(image.shape[1:]) != expected
            or not 1 <= image.shape[0] <= (self.max_batch or image.shape[0])
        ):
            raise BackendError(
                f"{self.name}: input shape {tuple(image.shape)} does not fit the model: "
                f"expected [1..{limit}, {', '.join(map(str, expected))}]"
            )
        if not np.issubdtype(image.dtype, np.floating):
            raise BackendError(
                f"{self.name}: input dtype {image.dtype}, expected float32 RGB in [0, 1] "
                f"(preprocess uint8 frames with rd_edge.core.preprocess.preprocess_bgr)"
            )
        return image

    def check_outputs(self, outputs: Dict[str, np.ndarray], n: int) -> Dict[str, np.ndarray]:
        """``outputs`` as float32 ``anomaly_map`` [n,1,h,w] and ``score`` [n]; BackendError otherwise."""
        missing = [k for k in OUTPUT_NAMES if k not in outputs]
        if missing:
            raise BackendError(f"{self.name} returned {sorted(outputs)}, lacking {missing}")
        maps = np.asarray(outputs["anomaly_map"], dtype=np.float32)
        scores = np.asarray(outputs["score"], dtype=np.float32).reshape(-1)
        if maps.ndim != 4 or maps.shape[:2] != (n, 1) or scores.shape != (n,):
            raise BackendError(
                f"{self.name} returned anomaly_map {maps.shape} and score "
                f"{scores.shape} for a batch of {n}; expected [{n},1,H,W] and [{n}]"
            )
        return {**outputs, "anomaly_map": maps, "score": scores}

    def describe(self) -> str:
        """What runs the model, for headers (e.g. device, precision, threads); "" when nothing to add."""
        return ""

    def close(self) -> None:
        """Release the session / device memory. Idempotent."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DeviceInputRunner(Runner):
    """A runner whose input lives in GPU memory that a CUDA kernel can write directly.

    The Detector uses this capability (not the backend's name) to pick CUDA preprocessing:
    kernels are enqueued on ``stream`` inside ``activate()`` and write float32 [N,3,H,W] at
    ``device_input_pointer()``; ``infer_from_device(n)`` then runs on the first ``n`` images.
    """

    stream: Any  # pycuda.driver.Stream

    @abstractmethod
    def activate(self) -> ContextManager[None]:
        """Make the runner's CUDA context current (a context manager)."""

    def call_in_context_owner(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` where CUDA objects of the runner's context may be freed: the thread that
        owns the context, with it current (this default: the calling thread, inside activate)."""
        with self.activate():
            return fn()

    @abstractmethod
    def device_input_pointer(self) -> int:
        """Device address of the input buffer, sized for ``max_batch``."""

    @property
    @abstractmethod
    def input_dtype(self) -> np.dtype:
        """dtype of the device input buffer (the CUDA kernel writes float32 only)."""

    def infer_from_device(self, batch: int) -> Dict[str, np.ndarray]:
        """Like ``infer``, for the first ``batch`` images already in device memory."""
        limit = self.max_batch or batch
        if not 1 <= batch <= limit:
            raise BackendError(f"{self.name}: batch {batch} does not fit the model: expected 1..{limit}")
        return self.check_outputs(self.infer_from_device_impl(batch), batch)

    @abstractmethod
    def infer_from_device_impl(self, batch: int) -> Dict[str, np.ndarray]:
        """Run on the first ``batch`` images of the device input buffer (already checked)."""


Loader = Callable[..., Runner]
Probe = Callable[[], Optional[str]]


@dataclass(frozen=True)
class BackendInfo:
    """One registry entry: how to load, which files it claims, whether it can run here."""

    name: str
    loader: Loader
    suffixes: Tuple[str, ...]
    probe: Optional[Probe]  # returns None when usable here, else the reason it is not
    aliases: Tuple[str, ...] = ()


_REGISTRY: Dict[str, BackendInfo] = {}
_ALIASES: Dict[str, str] = {}


def register_backend(
    name: str, *, suffixes: Sequence[str] = (), probe: Optional[Probe] = None, aliases: Sequence[str] = ()
) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(path, **options) -> Runner`` under ``name``.

    ``suffixes`` are the file suffixes ``backend="auto"`` maps to this backend; ``probe``
    tells :func:`available_backends` whether the backend can run on this machine.
    """

    def decorate(loader: Loader) -> Loader:
        claimed = tuple(s.lower() for s in suffixes)
        for info in _REGISTRY.values():
            clash = set(claimed) & set(info.suffixes)
            if info.name != name and clash:
                raise ValueError(f"suffixes {sorted(clash)} already belong to backend {info.name!r}")
        _REGISTRY[name] = BackendInfo(name, loader, claimed, probe, tuple(aliases))
        for alias in aliases:
            _ALIASES[alias] = name
        return loader

    return decorate


def registered_backends() -> List[str]:
    """Names of every registered backend, whether or not it can run here."""
    return sorted(_REGISTRY)


def why_unavailable(name: str) -> Optional[str]:
    """None when backend ``name`` can run here, else the reason (e.g. the extra to install)."""
    info = _REGISTRY[_canonical(name)]
    if info.probe is None:
        return None
    return info.probe()


def available_backends() -> List[str]:
    """Names of the registered backends whose dependencies are present on this machine."""
    return [name for name in registered_backends() if why_unavailable(name) is None]


def _canonical(name: str) -> str:
    """Registry name for ``name`` or one of its aliases; BackendError listing the known ones."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        known = ", ".join(["auto"] + registered_backends())
        raise BackendError(f"unknown backend {name!r}; expected one of: {known}")
    return key


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")  # what rd-train writes: rd-export turns it into a model


def resolve_backend(path: PathLike, backend: str = "auto") -> str:
    """The registry name that will load ``path``: ``backend`` itself, or chosen by suffix."""
    if backend != "auto":
        return _canonical(backend)
    suffix = Path(path).suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        raise BackendError(
            f"{path} is a training checkpoint, not an exported model; export it first: "
            f"rd-export {path} -o {Path(path).with_suffix('.onnx')}"
        )
    for info in _REGISTRY.values():
        if suffix in info.suffixes:
            return info.name
    claimed = "; ".join(f"{', '.join(i.suffixes)} -> {i.name}" for i in _REGISTRY.values() if i.suffixes)
    raise BackendError(
        f"cannot tell which backend runs {path} (suffix {suffix or 'none'!r}); "
        f"expected {claimed}, or pass backend= explicitly"
    )


def load_runner(path: PathLike, backend: str = "auto", **options: object) -> Runner:
    """Load ``path`` with the chosen backend; ``options`` go to that backend's loader.

    Raises BackendError for a missing file, an unknown backend or a backend that cannot run
    here, MetadataError for a model without valid ``rd_edge`` metadata.
    """
    path = Path(path)
    if not path.is_file():
        found = not_a_file(path)
        raise BackendError(
            f"cannot load model {path}: {found}; expected an .onnx file, an OpenVINO .xml or a "
            f".engine plan written by rd-export"
        )
    name = resolve_backend(path, backend)
    return _REGISTRY[name].loader(path, **options)


def reject_unknown_options(backend: str, options: Dict[str, object], accepted: Sequence[str]) -> None:
    """BackendError naming options a loader does not understand (typos must not pass silently)."""
    unknown = sorted(k for k, v in options.items() if v is not None)
    if unknown:
        raise BackendError(
            f"backend {backend!r} does not take option(s) {unknown}; it accepts: {', '.join(accepted)}"
        )
