"""The Detector API: frames in, scores and anomaly maps at the frame's own size out.

    det = Detector("model.onnx")                  # or "model.engine"; backend chosen by suffix
    pred = det.predict(frame_bgr_uint8)           # Prediction
    preds = det.predict([frame1, frame2, ...])    # batched through the runner

Preprocessing runs on the CPU (preprocess_bgr into a reused batch buffer) or, when the runner
exposes a device input buffer (TensorRT) and pycuda can compile the kernel, on the GPU straight
into that buffer. ``preprocess_device`` says which; ``preprocess_fallback_reason`` says why not
CUDA when it was possible in principle.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from rd_edge.core.errors import BackendError, MetadataError, RdEdgeError
from rd_edge.core.metadata import INPUT_NAME, ModelMetadata
from .backends import DeviceInputRunner, Runner, load_runner
from .backends.base import PathLike
from rd_edge.core.postprocess import normalize_score, resize_map
from rd_edge.core.preprocess import preprocess_bgr

Frames = Union[np.ndarray, Sequence[np.ndarray]]


@dataclass
class Prediction:
    """One frame's result.

    ``timings`` are this frame's share of its batch, in milliseconds: preprocess_ms,
    inference_ms, postprocess_ms and total_ms (their sum).
    """

    score: float  # raw image score: max of the anomaly map
    normalized_score: float  # threshold at 0.5, clipped to [0, 1]
    is_anomalous: bool  # score > threshold
    anomaly_map: np.ndarray  # float32 [H, W] at the frame's own size
    timings: Dict[str, float] = field(default_factory=dict)


class Detector:
    """Runs an exported RD model on BGR frames.

    ``model``: an .onnx / .engine path (or an already loaded Runner). ``backend``: "auto"
    (by suffix), "ort" or "trt". ``threshold`` overrides the metadata's. ``device``: "cpu",
    "cuda" or "cuda:N" (default: what the backend runs on). ``providers``: ONNX Runtime
    providers ("cpu", "cuda", "tensorrt" or full names). ``batch_size``: frames per runner call
    for list inputs, capped at the backend's maximum batch. ``cuda_preprocess``: None picks it
    automatically, False forces the CPU path, True makes its absence an error. Other keyword
    options go to the backend loader (e.g. fp16, cache_dir, threads, device_id).
    """

    def __init__(self, model: Union[PathLike, Runner], backend: str = "auto",
                 threshold: Optional[float] = None, device: Optional[str] = None,
                 providers: Union[None, str, Sequence[str]] = None, batch_size: int = 8,
                 cuda_preprocess: Optional[bool] = None, **options: Any) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(model, Runner):
            self.runner = model
        else:
            self.runner = load_runner(model, backend, device=device, providers=providers, **options)
        try:
            self._setup(threshold, int(batch_size), cuda_preprocess)
        except BaseException:
            self.runner.close()
            raise

    def _setup(self, threshold: Optional[float], batch_size: int, cuda_preprocess: Optional[bool]) -> None:
        meta = self.runner.metadata
        self.threshold = _resolve_threshold(threshold, meta)
        self._min_normal, self._max_normal = _normal_range(meta)
        limit = self.runner.max_batch or batch_size
        self.batch_size = min(batch_size, limit)
        h, w = self.input_size
        self._batch = np.empty((self.batch_size, 3, h, w), dtype=np.float32)  # reused [B,3,H,W]
        self._cuda_pre: Optional[Any] = None
        self.preprocess_fallback_reason: Optional[str] = None
        if cuda_preprocess is not False:
            self._try_cuda_preprocess(required=bool(cuda_preprocess))

    def _try_cuda_preprocess(self, required: bool) -> None:
        """Use the CUDA kernel when the runner offers a float32 device input and pycuda works."""
        runner = self.runner
        reason = None
        if not isinstance(runner, DeviceInputRunner):
            reason = f"backend {runner.name!r} has no device input buffer"
        elif runner.input_dtype != np.float32:
            reason = f"engine input is {runner.input_dtype}, the kernel writes float32"
        else:
            try:
                from .cuda_preprocess import CudaPreprocessor

                with runner.activate():
                    pre = CudaPreprocessor(self.input_size, runner.stream)
                    pre.compile()
                self._cuda_pre = pre
            except RdEdgeError as exc:
                reason = str(exc)
        if reason is not None and required:
            raise BackendError(f"CUDA preprocessing was requested but is unavailable: {reason}")
        # Only worth reporting when CUDA preprocessing was possible in principle.
        self.preprocess_fallback_reason = reason if isinstance(runner, DeviceInputRunner) else None

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
        """"cuda" when frames are preprocessed by the CUDA kernel, else "cpu"."""
        return "cuda" if self._cuda_pre is not None else "cpu"

    def display_range(self) -> Tuple[float, float]:
        """(vmin, vmax) for colouring maps: the normalized-score scale, threshold in the middle."""
        span = self._max_normal - self._min_normal
        span = span if np.isfinite(span) and span > 0 else 1.0
        return self.threshold - span / 2, self.threshold + span / 2

    # --- prediction ---------------------------------------------------------------------------

    def predict(self, frames: Frames) -> Union[Prediction, List[Prediction]]:
        """One frame (HxW, HxWx1/3/4; uint8, uint16, float in [0,1]) -> Prediction;
        a list of frames (or an [N,H,W,C] array) -> list of Predictions, in order."""
        is_batch = isinstance(frames, (list, tuple)) or (isinstance(frames, np.ndarray) and frames.ndim == 4)
        if not is_batch:
            return self._predict_batch([frames])[0]  # non-arrays fail in to_bgr_uint8, clearly
        frames = list(frames)
        results: List[Prediction] = []
        for start in range(0, len(frames), self.batch_size):
            results.extend(self._predict_batch(frames[start:start + self.batch_size]))
        return results

    def _predict_batch(self, frames: List[np.ndarray]) -> List[Prediction]:
        """At most batch_size frames through preprocess -> runner -> postprocess."""
        from rd_edge.core.images import to_bgr_uint8

        n = len(frames)
        t0 = time.perf_counter()
        frames = [f if _is_bgr_uint8(f) else to_bgr_uint8(f) for f in frames]
        if self._cuda_pre is not None:
            self._preprocess_cuda(frames)
            t1 = time.perf_counter()
            outputs = self.runner.infer_from_device(n)
        else:
            for i, frame in enumerate(frames):
                preprocess_bgr(frame, self.input_size, out=self._batch[i])  # [3,H,W] slot
            t1 = time.perf_counter()
            outputs = self.runner.infer({INPUT_NAME: self._batch[:n]})
        t2 = time.perf_counter()
        maps, scores = outputs["anomaly_map"], outputs["score"]  # [N,1,h,w], [N]: checked by the runner
        predictions = [self._postprocess(maps[i, 0], float(scores[i]), frames[i].shape[:2])
                       for i in range(n)]
        t3 = time.perf_counter()
        share = 1000.0 / n
        timings = {"preprocess_ms": (t1 - t0) * share, "inference_ms": (t2 - t1) * share,
                   "postprocess_ms": (t3 - t2) * share, "total_ms": (t3 - t0) * share}
        for p in predictions:
            p.timings = dict(timings)
        return predictions

    def _preprocess_cuda(self, frames: List[np.ndarray]) -> None:
        """Write the frames' tensors straight into the runner's device input buffer."""
        runner = self.runner
        with runner.activate():
            for i, frame in enumerate(frames):
                self._cuda_pre.enqueue(frame, runner.device_input_pointer(), i)
            # Wait, so preprocess_ms measures the kernels and not just their enqueueing.
            runner.stream.synchronize()

    def _postprocess(self, amap: np.ndarray, score: float, frame_hw: Tuple[int, int]) -> Prediction:
        normalized = float(normalize_score(score, self.threshold, self._min_normal, self._max_normal))
        return Prediction(score=score, normalized_score=normalized, is_anomalous=score > self.threshold,
                          anomaly_map=resize_map(amap, frame_hw))

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the runner (sessions, GPU buffers). Idempotent."""
        if self._cuda_pre is not None and isinstance(self.runner, DeviceInputRunner):
            with self.runner.activate():
                self._cuda_pre.close()
            self._cuda_pre = None
        self.runner.close()

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_bgr_uint8(frame: Any) -> bool:
    return isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


def _resolve_threshold(threshold: Optional[float], meta: ModelMetadata) -> float:
    """The caller's threshold, else the metadata's; MetadataError when neither exists."""
    if threshold is not None:
        return float(threshold)
    if meta.threshold is None:
        raise MetadataError("the model's rd_edge metadata has no threshold (its checkpoint had no "
                            "normal-score statistics); pass one: Detector(..., threshold=T) or "
                            "rd-infer --threshold T")
    return float(meta.threshold)


def _normal_range(meta: ModelMetadata) -> Tuple[float, float]:
    """(min, max) of the normal scores for normalized_score; (0, 1) without statistics, which
    makes normalized_score = score - threshold + 0.5 (normalize_score's unit-span fallback)."""
    stats = meta.score_stats or {}
    if "min" in stats and "max" in stats:
        return float(stats["min"]), float(stats["max"])
    return 0.0, 1.0
