"""Where a Detector preprocesses: the CPU, or a CUDA kernel writing into the runner's device input.

One small object with explicit states (in the spirit of Polygraphy's activate/deactivate), so
the Detector asks it, and never keeps CUDA state of its own:

- ``CPU``: CUDA preprocessing was not asked for (``cuda_preprocess=False``), or the backend has
  no device input buffer (nothing to report).
- ``UNAVAILABLE``: it was possible in principle but could not start (``reason`` says why);
  ``cuda_preprocess=True`` makes that an error instead.
- ``CUDA``: the kernel (whole frames, or the tile-cropping kernel of a tiled model) is compiled
  and writes straight into the runner's input.
- ``FELL_BACK``: a CUDA call failed while running; the CPU preprocesses from then on (one
  RuntimeWarning; an error instead when CUDA was required).
- ``CLOSED``: released with the Detector.

Writes into the device input hold the caller's lock: the runner has one input buffer.
"""

from __future__ import annotations

import enum
import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple, cast

import numpy as np

from rd_edge.core.errors import BackendError, RdEdgeError

from .backends import DeviceInputRunner, Runner


class PreprocessState(str, enum.Enum):
    CPU = "cpu"
    UNAVAILABLE = "unavailable"
    CUDA = "cuda"
    FELL_BACK = "fell back"
    CLOSED = "closed"


class PreprocessChoice:
    """The CUDA preprocessing decision of one Detector and the kernel object while it is on."""

    def __init__(
        self, runner: Runner, input_size: Tuple[int, int], resize: str, cuda_preprocess: Optional[bool]
    ) -> None:
        self.runner = runner
        self.input_size = input_size
        self.required = bool(cuda_preprocess)  # True: unavailable or failing CUDA is an error
        self.state = PreprocessState.CPU
        self.reason: Optional[str] = None  # why not CUDA, when it was possible in principle
        self._kernel: Any = None
        if cuda_preprocess is not False:
            self._activate(lambda: _whole_frames(input_size, runner, resize))

    @property
    def device(self) -> str:
        """ "cuda" while the kernel preprocesses, else "cpu"."""
        return "cuda" if self.state is PreprocessState.CUDA else "cpu"

    @property
    def _device(self) -> DeviceInputRunner:
        """The runner as the device-input runner it is whenever a kernel exists."""
        return cast(DeviceInputRunner, self.runner)

    def _activate(self, make: Callable[[], Any]) -> None:
        runner = self.runner
        reason = None
        if not isinstance(runner, DeviceInputRunner):
            reason = f"backend {runner.name!r} has no device input buffer"
        elif runner.input_dtype != np.float32:
            reason = f"engine input is {runner.input_dtype}, the kernel writes float32"
        else:
            try:
                self._kernel = runner.call_in_context_owner(lambda: _compiled(make()))
            except RdEdgeError as exc:
                reason = str(exc)
            except Exception as exc:  # any CUDA error (pycuda.driver.Error): the CPU path still works
                reason = f"CUDA preprocessing setup failed: {exc}"
        if reason is not None and self.required:
            raise BackendError(f"CUDA preprocessing was requested but is unavailable: {reason}")
        if reason is None:
            self.state, self.reason = PreprocessState.CUDA, None
        elif isinstance(runner, DeviceInputRunner):  # only worth reporting where CUDA was possible
            self.state, self.reason = PreprocessState.UNAVAILABLE, reason
        else:
            self.state = PreprocessState.CPU

    def use_tiles(self, tile: Tuple[int, int]) -> None:
        """A tiled model: swap the whole-frame kernel for the tile-cropping one. Tiles of another
        size than the model's input are resized, which the CPU does."""
        if self.state is not PreprocessState.CUDA:
            return
        self._release()
        if tuple(tile) != tuple(self.input_size):
            self.state = PreprocessState.UNAVAILABLE
            self.reason = (
                f"tiles of {tuple(tile)} are resized to the model's {tuple(self.input_size)} on the CPU"
            )
            return
        from .cuda_tiles import CudaTilePreprocessor

        runner = self._device
        self._activate(lambda: CudaTilePreprocessor(self.input_size, runner.stream))

    def write_frames(self, frames: Sequence[np.ndarray]) -> bool:
        """Whole frames into the device input, slots 0..N-1; False when CUDA fell back."""
        runner = self._device

        def enqueue() -> None:
            for i, frame in enumerate(frames):
                self._kernel.enqueue(frame, runner.device_input_pointer(), i)

        return self._write(enqueue)

    def write_tiles(self, frames: List[np.ndarray], grids: list, chunk: list) -> bool:
        """A chunk of tiles (core.tiled_prediction slots) into consecutive device input slots."""
        from .cuda_tiles import frame_runs

        runner = self._device

        def enqueue() -> None:
            for i, start, tiles in frame_runs(chunk):
                boxes = grids[i].boxes
                frame = np.ascontiguousarray(frames[i])
                self._kernel.enqueue_tiles(
                    frame, [boxes[k] for k in tiles], runner.device_input_pointer(), start
                )

        return self._write(enqueue)

    def _write(self, enqueue: Callable[[], None]) -> bool:
        if self.state is not PreprocessState.CUDA:
            return False
        from .cuda_preprocess import CudaPreprocessError

        runner = self._device
        try:
            with runner.activate():
                enqueue()
                # Wait, so preprocess_ms measures the kernels and not just their enqueueing.
                runner.stream.synchronize()
            return True
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, CudaPreprocessError)
                else CudaPreprocessError(f"CUDA preprocessing failed: {exc}")
            )
            if self.required:
                raise error from exc
        self._fall_back(error)
        return False

    def _fall_back(self, error: Exception) -> None:
        try:
            with self._device.activate():
                self._kernel.close()
        except Exception:  # noqa: BLE001 - the context may be unusable after the error
            pass
        self._kernel = None
        self.state, self.reason = PreprocessState.FELL_BACK, str(error)
        warnings.warn(f"{error}; preprocessing on the CPU from now on", RuntimeWarning, stacklevel=5)

    def _release(self) -> None:
        if self._kernel is not None:
            # In the context's owner thread: close() may come from any thread (the pipeline's).
            self._device.call_in_context_owner(self._kernel.close)
            self._kernel = None

    def close(self) -> None:
        """Free the kernel's CUDA objects (idempotent); the runner is the Detector's to close."""
        if self.state is not PreprocessState.CLOSED:
            self._release()
            self.state = PreprocessState.CLOSED


def _whole_frames(input_size: Tuple[int, int], runner: Any, resize: str) -> Any:
    from .cuda_preprocess import CudaPreprocessor

    return CudaPreprocessor(input_size, runner.stream, resize)


def _compiled(pre: Any) -> Any:
    """``pre`` (a CUDA preprocessor, made with its context current) with its kernel compiled;
    on failure its CUDA objects are freed at once, in the context, not whenever Python drops
    the half-made object (pycuda leaks those freed from a thread that does not own the context)."""
    try:
        pre.compile()
    except BaseException:
        pre.close()
        raise
    return pre
