"""Parity of an exported graph against the torch module it came from (ORT, and OpenCV DNN)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from rd_edge.core.errors import VerificationError
from rd_edge.core.metadata import INPUT_NAME
from rd_edge.core.preprocess import ModelInput

# Max abs difference allowed between the torch module and the graph, on map and score.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


@dataclass
class RuntimeParity:
    runtime: str
    max_abs_map: float
    max_abs_score: float
    ok: bool


@dataclass
class VerificationReport:
    images: str  # where the check images came from
    n_images: int
    tolerance: float
    results: List[RuntimeParity] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def format(self) -> str:
        lines = [f"verification on {self.n_images} images ({self.images}), tolerance {self.tolerance:g}:"]
        for r in self.results:
            lines.append(
                f"  {r.runtime:<14} max|d map| {r.max_abs_map:.2e}  max|d score| {r.max_abs_score:.2e}  "
                f"{'ok' if r.ok else 'FAIL'}"
            )
        lines += [f"  {name:<14} skipped: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def check_images(model: ModelInput, data_dir: Optional[str], n: int = 4, seed: int = 0):
    """[n,3,H,W] float32 in [0,1]: training images when the checkpoint knows them (preprocessed
    at ``model``'s size by its resize rule), else random."""
    from rd_edge.core.errors import RdEdgeError
    from rd_edge.core.scoring import load_batch
    from rd_edge.data import open_dataset

    if data_dir and Path(data_dir).is_dir():
        try:  # any layout rd-train reads: a dataset, or the plain folder of good images (--good)
            paths = open_dataset(data_dir).train_paths()[:n]
            batch = load_batch(paths, model)
            return batch, f"training images from {data_dir}"
        except RdEdgeError:
            pass  # fall through to random images; the source string says so
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, *model.image_size), dtype=np.float32), "random images"


def _parity(name: str, ref_map, ref_score, amap, score, tol: float) -> RuntimeParity:
    dm = float(np.abs(amap.reshape(ref_map.shape) - ref_map).max())
    ds = float(np.abs(score.reshape(ref_score.shape) - ref_score).max())
    return RuntimeParity(name, dm, ds, dm <= tol and ds <= tol)


def run_onnxruntime(onnx_path: Path, images: np.ndarray):
    """(anomaly_map, score) of the graph in ONNX Runtime on the CPU, through the runtime's runner."""
    from .accuracy import cpu_runner

    with cpu_runner(onnx_path) as runner:
        out = runner.infer({INPUT_NAME: images})
    return out["anomaly_map"], out["score"]


def run_opencv(onnx_path: Path, images: np.ndarray):
    """OpenCV DNN, one image at a time (the way the C++ example runs it)."""
    import cv2

    net = cv2.dnn.readNetFromONNX(str(onnx_path))
    maps, scores = [], []
    for img in images:
        net.setInput(img[None], "image")
        amap, score = net.forward(["anomaly_map", "score"])
        maps.append(amap.reshape(1, 1, *img.shape[1:]))
        scores.append(score.reshape(1))
    return np.concatenate(maps), np.concatenate(scores)


def verify_export(
    onnx_path: Path,
    torch_model,
    images: np.ndarray,
    image_source: str,
    precision: str = "fp32",
    with_opencv: bool = True,
) -> VerificationReport:
    """Run the torch module and the graph on the same images; raise VerificationError beyond tolerance."""
    import torch

    tol = TOLERANCE[precision]
    with torch.no_grad():
        ref_map, ref_score = (t.numpy() for t in torch_model(torch.from_numpy(images)))
    if not (np.isfinite(ref_map).all() and np.isfinite(ref_score).all()):
        raise VerificationError(
            "the checkpoint's model itself produces NaN or infinite outputs (its weights "
            "are broken, e.g. a diverged training run); nothing to export"
        )
    report = VerificationReport(image_source, len(images), tol)
    report.results.append(
        _parity("onnxruntime", ref_map, ref_score, *run_onnxruntime(onnx_path, images), tol)
    )
    if not with_opencv:
        report.skipped["opencv-dnn"] = f"not checked for {precision} graphs (OpenCV DNN runs fp32 on the CPU)"
    else:
        try:
            import cv2  # noqa: F401
        except ImportError:
            report.skipped["opencv-dnn"] = "cv2 not installed"
        else:
            report.results.append(
                _parity(
                    f"opencv-dnn {cv2.__version__}", ref_map, ref_score, *run_opencv(onnx_path, images), tol
                )
            )
    if not report.ok:
        worst = max(max(r.max_abs_map, r.max_abs_score) for r in report.results)
        raise VerificationError(
            f"exported graph disagrees with the torch model by {worst:.3g} "
            f"(tolerance {tol:g}):\n{report.format()}"
        )
    return report
