"""The Detector API: frames in, scores and anomaly maps at the frame's own size out.

    det = Detector("model.onnx")                  # or "model.engine"; backend chosen by suffix
    pred = det.predict(frame_bgr_uint8)           # Prediction
    preds = det.predict([frame1, frame2, ...])    # batched through the runner

The three steps are public (``preprocess`` -> ``infer`` -> ``postprocess``) so a pipeline can
run them in different threads; ``predict`` is the three in a row.

Preprocessing runs on the CPU (preprocess_bgr into a batch buffer of the call's own) or, when the runner
exposes a device input buffer (TensorRT) and pycuda can compile the kernel, on the GPU straight
into that buffer. ``preprocess_device`` says which; ``preprocess_fallback_reason`` says why not
CUDA when it was possible in principle.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union, cast, overload

import numpy as np

from rd_edge.core.errors import ConfigError, NonFiniteOutputError
from rd_edge.core.images import downscale_to_budget, fit_pixels
from rd_edge.core.metadata import INPUT_NAME, ModelMetadata
from rd_edge.core.postprocess import normalize_score, render_overlay, resize_map, score_scale
from rd_edge.core.preprocess import preprocess_bgr
from rd_edge.core.thresholds import check_threshold

from .backends import DeviceInputRunner, Runner, load_runner
from .backends.base import PathLike
from .preprocess_choice import PreprocessChoice
from .threshold_precedence import resolve_thresholds
from .tiled import TiledRunner

Frames = Union[np.ndarray, Sequence[np.ndarray]]


@dataclass
class Prediction:
    """One frame's result.

    ``timings`` are this frame's share of its batch, in milliseconds: preprocess_ms,
    inference_ms, postprocess_ms and total_ms (their sum).
    """

    score: float  # raw image score: max of the anomaly map
    normalized_score: float  # graded [0, 1], 0.5 at the threshold (core.postprocess.normalize_score)
    is_anomalous: bool  # score > threshold
    # float32 [H, W] at the frame's own size (above MAX_DISPLAY_PIXELS: scaled to fit it); None only
    # from a server asked for no maps (RemoteDetector without anomaly_map)
    anomaly_map: Optional[np.ndarray]
    timings: Dict[str, float] = field(default_factory=dict)


@dataclass
class Batch:
    """Frames between the Detector's steps: preprocess -> infer -> postprocess."""

    frames: List[np.ndarray]  # BGR uint8 [H,W,3], as preprocessed (their sizes size the maps)
    tensor: Optional[np.ndarray]  # [N,3,H,W] float32; None when infer preprocesses (CUDA, tiles)
    outputs: Optional[Dict[str, np.ndarray]] = None  # anomaly_map [N,1,h,w], score [N], after infer
    tiled: Optional[List[Tuple[np.ndarray, float]]] = None  # tiled models: stitched (map, score) per frame
    seconds: Dict[str, float] = field(default_factory=dict)  # wall time of each step for the batch


class Detector:
    """Runs an exported RD model on BGR frames.

    ``model``: an .onnx / .engine path (or an already loaded Runner). ``backend``: "auto"
    (by suffix), "ort" or "trt". ``threshold`` (image) and ``pixel_threshold`` (masks) override
    ``thresholds.json`` beside the model, which overrides the metadata's. ``device``: "cpu",
    "cuda" or "cuda:N" (default: what the backend runs on). ``providers``: ONNX Runtime
    providers ("cpu", "cuda", "tensorrt" or full names). ``batch_size``: frames per runner call
    for list inputs, capped at the backend's maximum batch. ``cuda_preprocess``: None picks it
    automatically, False forces the CPU path, True makes its absence an error. ``tile_batch``
    (tiled models only): at most this many tiles per runner call (default: a bound on memory,
    rd_edge.runtime.tiled.default_tile_batch, and the backend's maximum batch; 1 runs tile by tile). Other keyword
    options go to the backend loader (e.g. fp16, cache_dir, threads, device_id).

    Thread safety: one Detector may be shared by several threads. Each call preprocesses into
    a batch buffer of its own; the runner call is serialized by a lock unless the backend runs
    concurrent calls itself (ONNX Runtime's ``session.run`` does; a TensorRT execution context
    and the CUDA preprocessing buffer do not). Measured cheaper than one lock around the whole
    batch path (docs in the issue 16 note: per-call buffers overlap one thread's preprocessing
    with another's inference, and allocating a buffer costs microseconds next to a model call).

    Frames whose scores come out NaN or infinite are never a verdict: ``predict`` raises
    NonFiniteOutputError, which carries the other frames' Predictions.
    """

    def __init__(
        self,
        model: Union[PathLike, Runner],
        backend: str = "auto",
        threshold: Optional[float] = None,
        device: Optional[str] = None,
        providers: Union[None, str, Sequence[str]] = None,
        batch_size: int = 8,
        cuda_preprocess: Optional[bool] = None,
        tile_batch: Optional[int] = None,
        pixel_threshold: Optional[float] = None,
        **options: Any,
    ) -> None:
        batch_size = _check_batch_size(batch_size)
        if threshold is not None:
            threshold = check_threshold(threshold, "threshold")  # before loading anything
        if pixel_threshold is not None:
            pixel_threshold = check_threshold(pixel_threshold, "pixel_threshold")
        if isinstance(model, Runner):
            self.runner = model
        elif isinstance(model, (str, os.PathLike)):
            self.runner = load_runner(model, backend, device=device, providers=providers, **options)
        else:
            raise ConfigError(
                f"Detector(model=...): expected an .onnx/.engine path or a loaded Runner, "
                f"found {type(model).__name__}"
            )
        try:
            self._setup(threshold, pixel_threshold, batch_size, cuda_preprocess)
            tiling = self.metadata.tile_spec()
            self._tiled = (
                TiledRunner(self.runner, tiling, tile_batch, self._lock) if tiling is not None else None
            )
            if self._tiled is not None and self._pre.device == "cuda":
                self._pre.use_tiles(self._tiled.tiling.tile)
                if self._pre.device == "cuda":
                    self._tiled.device_writer = self._tiles_cuda
        except BaseException:
            self.runner.close()
            raise

    def _setup(
        self,
        threshold: Optional[float],
        pixel_threshold: Optional[float],
        batch_size: int,
        cuda_preprocess: Optional[bool],
    ) -> None:
        meta = self.runner.metadata
        self.thresholds = resolve_thresholds(
            getattr(self.runner, "path", None), meta, threshold, pixel_threshold
        )
        self.threshold = self.thresholds.image_threshold  # score > threshold: anomalous
        self.pixel_threshold = (
            self.thresholds.pixel_threshold
        )  # map > pixel_threshold: anomalous pixel (masks, outline)
        self.score_scale = score_scale(meta.score_stats)  # normalized_score's scale (3 std)
        limit = self.runner.max_batch or batch_size
        self.batch_size = min(batch_size, limit)
        # Serializes runner calls a backend cannot run concurrently (and the CUDA input buffer).
        self._lock = threading.Lock()
        self._pre = PreprocessChoice(self.runner, self.input_size, meta.resize, cuda_preprocess)

    # --- properties ---------------------------------------------------------------------------

    @property
    def metadata(self) -> ModelMetadata:
        return self.runner.metadata

    @property
    def backend(self) -> str:
        """Registry name of the runner's backend ("ort", "trt", ...)."""
        return self.runner.name

    @property
    def input_size(self) -> Tuple[int, int]:
        """The model's (H, W)."""
        return self.metadata.height, self.metadata.width

    @property
    def preprocess_device(self) -> str:
        """ "cuda" when frames are preprocessed by the CUDA kernel, else "cpu"."""
        return self._pre.device

    @property
    def preprocess_fallback_reason(self) -> Optional[str]:
        """Why preprocessing is not on CUDA where it could have been (None: it is, or cannot be)."""
        return self._pre.reason

    def tile_grid(self, frame_hw: Tuple[int, int]) -> Any:
        """Tiled models: the TileGrid a frame of (H, W) is cut into (None for whole-frame models)."""
        return self._tiled.grid(frame_hw) if self._tiled is not None else None

    def render(
        self, frame_bgr: np.ndarray, prediction: Prediction, ground_truth: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """The overlay of one prediction on its frame (rd_edge.core.postprocess.render_overlay):
        heat map on the normalized-score scale, verdict, scores, colour bar, outlines."""
        if prediction.anomaly_map is None:
            raise ValueError(
                "render needs the prediction's anomaly map: a RemoteDetector must be created "
                "with anomaly_map=True"
            )
        frame_bgr = downscale_to_budget(frame_bgr)  # overlays at a bounded size (MAX_DISPLAY_PIXELS)
        if ground_truth is not None and ground_truth.shape != frame_bgr.shape[:2]:
            import cv2

            h, w = frame_bgr.shape[:2]
            ground_truth = (
                cv2.resize(ground_truth.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            )
        return render_overlay(
            frame_bgr,
            prediction.anomaly_map,
            prediction.score,
            self.threshold,
            self.score_scale,
            self.pixel_threshold,
            ground_truth,
        )

    # --- prediction ---------------------------------------------------------------------------

    @overload
    def predict(self, frames: Union[List[np.ndarray], Tuple[np.ndarray, ...]]) -> List[Prediction]: ...

    @overload
    def predict(self, frames: np.ndarray) -> Union[Prediction, List[Prediction]]: ...  # [N,H,W,C]: a list

    def predict(self, frames: Frames) -> Union[Prediction, List[Prediction]]:
        """One frame (HxW, HxWx1/3/4; uint8, uint16, float in [0,1]) -> Prediction;
        a list of frames (or an [N,H,W,C] array) -> list of Predictions, in order.

        NonFiniteOutputError when the model's outputs for any frame are NaN or infinite."""
        is_batch = isinstance(frames, (list, tuple)) or (isinstance(frames, np.ndarray) and frames.ndim == 4)
        items = list(frames) if is_batch else [cast(np.ndarray, frames)]  # non-arrays fail in to_bgr_uint8
        results: List[Optional[Prediction]] = []
        for start in range(0, len(items), self.batch_size):
            results.extend(self._predict_batch(items[start : start + self.batch_size]))
        bad = [i for i, p in enumerate(results) if p is None]
        if bad:
            raise NonFiniteOutputError(
                f"{NonFiniteOutputError.FRAME_ERROR} for {len(bad)} of {len(results)} frame(s) "
                f"(positions {bad[:10]}); the model is broken (e.g. NaN weights): re-export it and "
                f"check rd-export's verification",
                results,
            )
        predictions = [p for p in results if p is not None]  # all of them: checked just above
        return predictions if is_batch else predictions[0]

    def _predict_batch(self, frames: List[np.ndarray]) -> List[Optional[Prediction]]:
        """At most batch_size frames through preprocess -> infer -> postprocess; None for a
        frame whose outputs are not finite."""
        return self.postprocess(self.infer(self.preprocess(frames)))

    # --- the three steps, for pipelines that run them in different threads --------------------

    def preprocess(self, frames: Sequence[np.ndarray]) -> "Batch":
        """Step 1: 1..batch_size frames -> a Batch for :meth:`infer` (safe from any thread).

        On the CPU the tensor is the batch's own [N,3,H,W] array, so the next batch can be
        preprocessed while this one is inferred. CUDA preprocessing writes into the runner's one
        device input buffer, so it runs inside :meth:`infer` (under the runner lock); tiled
        models crop their tiles there too. Here those paths only convert the frames.
        """
        from rd_edge.core.images import to_bgr_uint8

        if not 1 <= len(frames) <= self.batch_size:
            raise ValueError(f"preprocess takes 1..{self.batch_size} frames (batch_size), got {len(frames)}")
        t0 = time.perf_counter()
        frames = [f if _is_bgr_uint8(f) else to_bgr_uint8(f) for f in frames]
        tensor = self._cpu_tensor(frames) if self._pre.device == "cpu" and self._tiled is None else None
        return Batch(frames, tensor, seconds={"preprocess": time.perf_counter() - t0})

    def _cpu_tensor(self, frames: List[np.ndarray]) -> np.ndarray:
        h, w = self.input_size
        tensor = np.empty((len(frames), 3, h, w), dtype=np.float32)  # this call's own: threads never share it
        for i, frame in enumerate(frames):
            preprocess_bgr(frame, self.input_size, out=tensor[i], resize=self.metadata.resize)  # [3,H,W] slot
        return tensor

    def infer(self, batch: "Batch") -> "Batch":
        """Step 2: run the model on the batch; fills ``batch.outputs`` and returns the batch."""
        t0 = time.perf_counter()
        n = len(batch.frames)
        if self._tiled is not None:
            clock = {"preprocess": 0.0}
            batch.tiled = self._tiled.run(batch.frames, clock)  # stitched (map [H,W], score) per frame
            for step, seconds in clock.items():
                batch.seconds[step] = batch.seconds.get(step, 0.0) + seconds
            return batch
        if batch.tensor is None:
            with self._lock:  # one device input buffer
                if self._pre.write_frames(batch.frames):  # False: a CUDA error, CPU from now on
                    t1 = time.perf_counter()
                    batch.outputs = cast(DeviceInputRunner, self.runner).infer_from_device(n)
            if batch.outputs is None:
                batch.tensor = self._cpu_tensor(batch.frames)
                t1 = time.perf_counter()
            batch.seconds["preprocess"] += t1 - t0
            t0 = t1
        if batch.outputs is None:
            tensor = batch.tensor if batch.tensor is not None else self._cpu_tensor(batch.frames)
            with nullcontext() if self.runner.concurrent else self._lock:
                batch.outputs = self.runner.infer({INPUT_NAME: tensor})
        batch.seconds["inference"] = time.perf_counter() - t0
        return batch

    def postprocess(self, batch: "Batch") -> List[Optional[Prediction]]:
        """Step 3: an inferred batch -> one Prediction per frame (maps at each frame's size),
        None for a frame whose outputs are not finite (never a verdict)."""
        if batch.outputs is None and batch.tiled is None:
            raise ValueError("postprocess needs an inferred batch: call infer(batch) first")
        t0 = time.perf_counter()
        frames, n = batch.frames, len(batch.frames)
        if batch.tiled is not None:
            predictions = [
                self._postprocess(amap, score, amap.shape) if np.isfinite(amap).all() else None
                for amap, score in batch.tiled
            ]
        else:
            outputs = cast(Dict[str, np.ndarray], batch.outputs)  # not None: checked above
            maps, scores = outputs["anomaly_map"], outputs["score"]  # [N,1,h,w], [N]: checked by the runner
            finite = np.isfinite(scores) & np.isfinite(maps).reshape(n, -1).all(axis=1)
            predictions = [
                self._postprocess(maps[i, 0], float(scores[i]), frames[i].shape[:2]) if finite[i] else None
                for i in range(n)
            ]
        batch.seconds["postprocess"] = batch.seconds.get("postprocess", 0.0) + time.perf_counter() - t0
        share = 1000.0 / n
        timings = {
            f"{step}_ms": batch.seconds.get(step, 0.0) * share
            for step in ("preprocess", "inference", "postprocess")
        }
        timings["total_ms"] = sum(timings.values())
        for p in predictions:
            if p is not None:
                p.timings = dict(timings)
        return predictions

    def _tiles_cuda(self, frames: List[np.ndarray], grids: list, chunk: list):
        """One chunk of tiles cropped into the device input by the kernel and run; None when a
        CUDA error moved preprocessing to the CPU (the TiledRunner then crops there)."""
        with self._lock:  # one device input buffer
            if not self._pre.write_tiles(frames, grids, chunk):
                if self._tiled is not None:
                    self._tiled.device_writer = None
                return None
            ready = time.perf_counter()
            return cast(DeviceInputRunner, self.runner).infer_from_device(len(chunk)), ready

    def _postprocess(self, amap: np.ndarray, score: float, frame_hw: Tuple[int, int]) -> Prediction:
        normalized = float(normalize_score(score, self.threshold, self.score_scale))
        return Prediction(
            score=score,
            normalized_score=normalized,
            is_anomalous=score > self.threshold,
            anomaly_map=resize_map(amap, fit_pixels(frame_hw)),
        )

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the runner (sessions, GPU buffers). Idempotent."""
        if hasattr(self, "_pre"):
            self._pre.close()
        self.runner.close()

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_bgr_uint8(frame: Any) -> bool:
    """A frame usable as is; anything else (an empty 0x0 frame too) goes through to_bgr_uint8,
    which converts it or raises ImageReadError."""
    return (
        isinstance(frame, np.ndarray)
        and frame.dtype == np.uint8
        and frame.ndim == 3
        and frame.shape[2] == 3
        and frame.size > 0
    )


MAX_BATCH_SIZE = 4096  # far above any GPU's useful batch; catches e.g. a frame count passed by mistake


def _check_batch_size(batch_size: Any) -> int:
    """batch_size as an int in 1..MAX_BATCH_SIZE; ConfigError otherwise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ConfigError(f"batch_size must be an integer, found {batch_size!r}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(f"batch_size must be >= 1 and <= {MAX_BATCH_SIZE}, got {batch_size}")
    return int(batch_size)
