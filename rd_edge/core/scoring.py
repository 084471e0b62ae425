"""Image files -> model input -> maps and scores: the loop every offline path shares.

Torch-free. rd-calibrate, rd-eval, the exporter's graph evaluation, export verification, int8
calibration data and rd-train's image cache all read image files and preprocess them the way
the runtime does (the model's size and resize rule, rd_edge.core.preprocess); the scoring paths
then run a batch callable on them: float32 [n,3,h,w] -> (maps [n,h,w] or [n,1,h,w], scores [n]).
"""

from __future__ import annotations

from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .files import PathLike
from .images import read_image
from .preprocess import ModelInput, preprocess_for

ScoreRun = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]
# Wraps the batch starts, e.g. ``lambda starts: tqdm(starts, desc="eval", unit="batch")``.
Progress = Callable[[Sequence[int]], Iterable[int]]


def load_batch(paths: Sequence[PathLike], model: ModelInput) -> np.ndarray:
    """float32 [N,3,H,W]: each image read (ImageReadError names a bad file) and preprocessed at
    ``model``'s size by its resize rule."""
    h, w = (int(v) for v in model.image_size)
    batch = np.empty((len(paths), 3, h, w), dtype=np.float32)
    for i, path in enumerate(paths):
        preprocess_for(model, read_image(path), out=batch[i])
    return batch


def score_images(
    paths: Sequence[PathLike],
    model: ModelInput,
    run: ScoreRun,
    batch_size: int = 8,
    progress: Optional[Progress] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Maps float32 [N,H,W] at the model size and scores float64 [N] of ``run`` on the images,
    ``batch_size`` images per call."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts: Sequence[int] = range(0, len(paths), batch_size)
    maps: List[np.ndarray] = []
    scores: List[np.ndarray] = []
    for i in progress(starts) if progress is not None else starts:
        amap, score = run(load_batch(paths[i : i + batch_size], model))
        amap = np.asarray(amap, np.float32)
        maps.append(amap.reshape(amap.shape[0], *amap.shape[-2:]))  # [n,1,h,w] or [n,h,w] -> [n,h,w]
        scores.append(np.asarray(score, np.float64).reshape(-1))
    if not maps:
        h, w = (int(v) for v in model.image_size)
        return np.zeros((0, h, w), np.float32), np.zeros(0, np.float64)
    return np.concatenate(maps), np.concatenate(scores)
