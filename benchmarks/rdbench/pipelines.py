"""One class per backend behind a common interface: uint8 BGR frames -> scores and maps on the host.

Every pipeline ends the same way, so rows are comparable: an image score per frame and an
anomaly map resized back to the frame's own size, both as numpy on the host. Stage times are
measured inside ``run`` (preprocess, inference, postprocess); the worker measures end to end
around it.

torch is imported only by the torch pipelines (``reference``, ``torch``): the ONNX Runtime and
TensorRT pipelines run in a torch-free process, as the runtime is deployed.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Type

import numpy as np

from .errors import BackendUnavailable
from .results import CallTimes, Job

BLUR_SIGMA = 4.0  # the original's scipy.ndimage.gaussian_filter(sigma=4)


class Pipeline(ABC):
    """A loaded backend. ``load`` once, then ``run`` on batches of frames."""

    def __init__(self, job: Job) -> None:
        self.job = job

    @abstractmethod
    def load(self) -> None:
        """Load the model; BackendUnavailable (or an RdEdgeError) when it cannot run here."""

    @abstractmethod
    def run(self, frames: List[np.ndarray]) -> CallTimes:
        """One batch, end to end; the stage times and the scores."""

    def details(self) -> Dict[str, Any]:
        """What the row ran on (device, providers, thread counts)."""
        return {"device": "cpu", "threads": self.job.threads}

    def gpu_memory_mb(self) -> Optional[float]:
        """GPU memory in use, where the backend has a GPU; None otherwise."""
        return None

    def close(self) -> None:
        """Release the model."""


# --- torch pipelines ----------------------------------------------------------------------------


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"torch is not installed: `pip install '.[train]'` ({exc})") from exc
    return torch


class _TorchPipeline(Pipeline):
    """Shared loading for the two torch rows: same checkpoint, same thread count as ORT."""

    def load(self) -> None:
        import rd_edge

        torch = _import_torch()
        self.torch = torch
        # Same intra-op thread count as ORT's intra_op_num_threads, so rows compare like for like.
        torch.set_num_threads(self.job.threads)
        self.model = rd_edge.load_checkpoint(self.job.model_path).eval()
        self.size = tuple(self.model.config.image_size)  # (H, W)

    def details(self) -> Dict[str, Any]:
        return {"device": "cpu", "threads": self.job.threads, "torch_threads": self.torch.get_num_threads()}


class ReferencePipeline(_TorchPipeline):
    """The original RD4AD evaluation pipeline (its ``cal_anomaly_map`` + scipy blur).

    Preprocess: the checkpoint's resize rule (area shrink, as the original's antialiased PIL resize,
    or linear for older checkpoints), BGR->RGB, to a float tensor /255, ImageNet normalization in torch.
    Inference (torch.no_grad, as the original): teacher/OCBE/student features, per scale
    1 - F.cosine_similarity and F.interpolate(bilinear, align_corners=True), summed in torch.
    Postprocess on the CPU: the map to numpy, scipy.ndimage.gaussian_filter(sigma=4) per image,
    max as the score, and (as every row does) the map resized to the frame.
    """

    def run(self, frames: List[np.ndarray]) -> CallTimes:
        t0 = time.perf_counter()
        x = self._preprocess(frames)
        t1 = time.perf_counter()
        with self.torch.no_grad():
            raw = self._anomaly_map(x)
        t2 = time.perf_counter()
        scores = self._postprocess(raw, frames)
        t3 = time.perf_counter()
        return CallTimes(t1 - t0, t2 - t1, t3 - t2, scores)

    def _preprocess(self, frames: List[np.ndarray]) -> Any:
        import cv2

        from rd_edge.core.preprocess import resize_bgr

        torch = self.torch
        tensors = []
        for frame in frames:
            rgb = cv2.cvtColor(resize_bgr(frame, self.size, rule=self.model.config.resize), cv2.COLOR_BGR2RGB)
            tensors.append(torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0))
        return self.model.normalize(torch.stack(tensors))

    def _anomaly_map(self, x: Any) -> Any:
        import torch.nn.functional as F

        teacher, student = self.model.rd(x)
        total = None
        for ft, fs in zip(teacher, student):
            d = (1.0 - F.cosine_similarity(ft, fs)).unsqueeze(1)  # [N,1,h,w]
            d = F.interpolate(d, size=self.size, mode="bilinear", align_corners=True)
            total = d if total is None else total + d
        return total  # [N,1,H,W]

    def _postprocess(self, raw: Any, frames: List[np.ndarray]) -> List[float]:
        from scipy.ndimage import gaussian_filter

        from rd_edge.core.postprocess import resize_map

        maps = raw[:, 0].cpu().numpy()
        scores = []
        for amap, frame in zip(maps, frames):
            blurred = gaussian_filter(amap, sigma=BLUR_SIGMA)  # one 2-D map: no blur across the batch
            scores.append(float(blurred.max()))
            resize_map(blurred, frame.shape[:2])
        return scores


class TorchPipeline(_TorchPipeline):
    """The fused module from ``load_checkpoint`` in eager mode (torch.inference_mode).

    Preprocessing and postprocessing are the runtime's (preprocess_bgr, resize_map,
    normalize_score), so this row differs from ``ort`` only in the engine that runs the graph.
    """

    def load(self) -> None:
        from rd_edge.core.postprocess import score_scale

        super().load()
        h, w = self.size
        self._batch = np.empty((max(self.job.batch_sizes), 3, h, w), dtype=np.float32)
        self._threshold = float(getattr(self.model, "threshold", None) or 0.0)
        self._scale = score_scale(getattr(self.model, "score_stats", None))

    def run(self, frames: List[np.ndarray]) -> CallTimes:
        from rd_edge.core.postprocess import normalize_score, resize_map
        from rd_edge.core.preprocess import preprocess_bgr

        n = len(frames)
        t0 = time.perf_counter()
        for i, frame in enumerate(frames):
            preprocess_bgr(frame, self.size, out=self._batch[i], resize=self.model.config.resize)
        x = self.torch.from_numpy(self._batch[:n])
        t1 = time.perf_counter()
        with self.torch.inference_mode():
            amap, score = self.model(x)
        t2 = time.perf_counter()
        maps, scores = amap.numpy(), score.numpy()
        for i, frame in enumerate(frames):
            resize_map(maps[i, 0], frame.shape[:2])
        normalize_score(scores, self._threshold, self._scale)
        t3 = time.perf_counter()
        return CallTimes(t1 - t0, t2 - t1, t3 - t2, [float(s) for s in scores])


# --- runtime (Detector) pipelines ---------------------------------------------------------------


class DetectorPipeline(Pipeline):
    """The runtime's Detector (ONNX Runtime or TensorRT): its own stage timings.

    ``job.options``: ``backend`` ("ort" | "trt") and, for ort, ``providers``. The Detector is
    sized for the largest batch once; smaller batches reuse it.
    """

    def load(self) -> None:
        from rd_edge.core.errors import MetadataError
        from rd_edge.runtime import Detector

        opts = dict(self.job.options)
        backend = opts.pop("backend", "ort")
        kwargs: Dict[str, Any] = {"backend": backend, "batch_size": max(self.job.batch_sizes)}
        if backend == "ort":
            kwargs.update(
                providers=opts.pop("providers", ["cpu"]), threads=self.job.threads, cuda_preprocess=False
            )
        elif backend == "openvino":
            kwargs.update(threads=self.job.threads, precision=opts.pop("inference_precision", None))
        try:
            self.detector = Detector(self.job.model_path, **kwargs)
        except MetadataError as exc:
            if "threshold" not in str(exc):
                raise
            # A graph without a threshold still measures the same; the flag is irrelevant here.
            self.detector = Detector(self.job.model_path, threshold=0.0, **kwargs)

    def run(self, frames: List[np.ndarray]) -> CallTimes:
        predictions = self.detector.predict(list(frames))
        # Each frame carries its share of its chunk's time, so the sums are the call's stage
        # times even when an engine's max batch made the Detector split the call.
        stage = {
            k: sum(p.timings[k] for p in predictions) / 1000.0
            for k in ("preprocess_ms", "inference_ms", "postprocess_ms")
        }
        return CallTimes(
            stage["preprocess_ms"],
            stage["inference_ms"],
            stage["postprocess_ms"],
            [p.score for p in predictions],
        )

    def details(self) -> Dict[str, Any]:
        runner = self.detector.runner
        providers = list(getattr(runner, "providers", []) or [])
        on_gpu = runner.name == "trt" or any(p != "CPUExecutionProvider" for p in providers)
        info: Dict[str, Any] = {
            "device": "cuda" if on_gpu else "cpu",
            "runner": runner.name,
            "preprocess_device": self.detector.preprocess_device,
            "detector_batch": self.detector.batch_size,
        }
        if providers:
            info.update(providers=providers, threads=self.job.threads)
        if runner.name == "openvino":
            info.update(inference_precision=getattr(runner, "precision", None), threads=self.job.threads)
        meta = runner.metadata
        info["model_precision"] = meta.precision
        if meta.extra.get("int8_target"):
            info["int8_target"] = meta.extra["int8_target"]  # "cpu" or "tensorrt" flavour of Q/DQ
        if self.detector.preprocess_fallback_reason:
            info["preprocess_fallback_reason"] = self.detector.preprocess_fallback_reason
        return info

    def gpu_memory_mb(self) -> Optional[float]:
        """Device-wide memory in use (pycuda mem_get_info) for runners holding a CUDA context."""
        from rd_edge.runtime import DeviceInputRunner

        runner = self.detector.runner
        if not isinstance(runner, DeviceInputRunner):
            return None
        try:
            import pycuda.driver as cuda

            with runner.activate():
                free, total = cuda.mem_get_info()
        except (ImportError, RuntimeError) as exc:  # pycuda's errors derive from RuntimeError
            raise BackendUnavailable(f"cannot read GPU memory: {exc}") from exc
        return (total - free) / 2**20

    def close(self) -> None:
        self.detector.close()


PIPELINES: Dict[str, Type[Pipeline]] = {
    "reference": ReferencePipeline,
    "torch": TorchPipeline,
    "ort": DetectorPipeline,
    "ort-cuda": DetectorPipeline,
    "ort-tensorrt": DetectorPipeline,
    "ort-int8": DetectorPipeline,
    "trt": DetectorPipeline,
    "openvino": DetectorPipeline,
}


def make_pipeline(job: Job) -> Pipeline:
    """The pipeline for ``job.backend``; ValueError for an unknown name."""
    try:
        return PIPELINES[job.backend](job)
    except KeyError:
        raise ValueError(f"unknown backend {job.backend!r}; known: {', '.join(PIPELINES)}") from None
