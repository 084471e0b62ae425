"""A line to watch: the tiny model, a stable and a drifting video (brightness ramp), and
thresholds.json with the normal scores of calibration (the drift reference)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from conftest import build_tiny_model

from rd_edge.core.drift import reference_from_scores
from rd_edge.core.thresholds import Thresholds

SIZE = (96, 128)  # frame H, W
FPS = 20
DEFECT_FRAMES = (40, 110, 170)
THRESHOLD = 0.2  # stable frames score ~0.05, defects ~0.48, the ramp reaches ~0.3


def frame(rng: np.random.Generator, gain: float, defect: bool) -> np.ndarray:
    image = np.clip(rng.normal(128 * gain, 12, SIZE + (3,)), 0, 255).astype(np.uint8)
    if defect:
        image[30:50, 40:70] = 250
    return image


def write_video(path: Path, gains: np.ndarray, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE[::-1])
    for i, gain in enumerate(gains):
        writer.write(frame(rng, float(gain), i in DEFECT_FRAMES))
    writer.release()
    return path


def make_scene(folder: Path, n: int = 200, ramp: float = 0.5) -> dict[str, Path]:
    """model.onnx + thresholds.json (reference: 40 good frames of another seed) + two videos."""
    folder.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(folder / "model.onnx")
    from rd_edge.runtime import Detector

    held_out = write_video(folder / "held_out.avi", np.ones(40), seed=99)  # through the same codec
    capture = cv2.VideoCapture(str(held_out))
    frames = [capture.read()[1] for _ in range(40)]
    capture.release()
    with Detector(model, threshold=THRESHOLD) as det:
        scores = [p.score for p in det.predict(frames)]
    Thresholds(
        image_threshold=THRESHOLD,
        method="manual",
        model=model.name,
        checkpoint_sha256="0" * 64,
        normal_scores=reference_from_scores(scores),
    ).write(folder / "thresholds.json")
    return {
        "model": model,
        "stable": write_video(folder / "stable.avi", np.ones(n), seed=1),
        "drift": write_video(folder / "drift.avi", np.linspace(1.0, 1.0 + ramp, n), seed=2),
    }
