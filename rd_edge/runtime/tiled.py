"""Tiled inference: frames -> overlapping tiles -> one runner batch -> stitched frame maps.

Used by the Detector for models whose metadata carries a ``tiling``. Tiles of the frames
given together go through the runner in batches of ``tile_batch`` (default: a memory bound,
default_tile_batch), smaller where the runner's max batch is. The tile maps are blended with the tiling's window
(rd_edge.core.tiling) into one map at the frame's resolution; the score is its maximum.

A model trained for one frame size (``tiling.frame``) sees other frames resized to that size
first, so its tiles keep the pixel scale and its threshold the tile count it was calibrated
with; the map is resized back to the frame. A model trained for "any" size tiles every frame
at its own resolution.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Dict, List, Optional, Tuple

import numpy as np

from rd_edge.core.metadata import INPUT_NAME
from rd_edge.core.tiled_prediction import Slot, TiledPrediction
from rd_edge.core.tiling import TileGrid, Tiling

from .backends.base import Runner

# Tiles per runner call when the caller names none: the float32 input of one call stays within
# this budget (the activations inside the model grow with it), and at most DEFAULT_MAX_TILES.
# A 4000x4000 frame is 6,889 tiles of 64 px: in one call it failed to allocate.
TILE_BATCH_BYTES = 16 * 2**20
DEFAULT_MAX_TILES = 64


def default_tile_batch(model_hw: Tuple[int, int]) -> int:
    """Tiles per runner call for a model input of (h, w): 64 for tiles up to 147x147, fewer above."""
    per_tile = 3 * int(model_hw[0]) * int(model_hw[1]) * 4  # float32 [3,h,w]
    return max(1, min(DEFAULT_MAX_TILES, TILE_BATCH_BYTES // per_tile))


# (fitted frames, grids, slots) -> (runner outputs for the slots, time.perf_counter() when the tiles
# were ready); None: the device path gave up (e.g. a CUDA error); the tiles are then cropped on the CPU.
ChunkRunner = Callable[
    [List[np.ndarray], List[TileGrid], List[Slot]], Optional[Tuple[Dict[str, np.ndarray], float]]
]


class TiledRunner:
    """Runs a tiled model on lists of uint8 BGR frames; ``run`` returns (map [H,W], score) each.

    The loop is rd_edge.core.tiled_prediction's; this adds the runner, its lock and the CUDA
    path. ``tile_batch`` caps the tiles per runner call (None: default_tile_batch of the
    model's input, a bound on memory; 1 runs tile by tile, for comparison). ``device_writer``,
    when given, writes the tiles of a chunk straight into the runner's device input and runs
    it (the CUDA path); else tiles are cropped and converted on the CPU into a batch of the
    call's own (threads may share a TiledRunner).
    """

    def __init__(
        self,
        runner: Runner,
        tiling: Tiling,
        tile_batch: Optional[int] = None,
        lock: Optional[ContextManager[Any]] = None,
    ) -> None:
        if tile_batch is not None and int(tile_batch) < 1:
            raise ValueError(f"tile_batch must be >= 1, got {tile_batch}")
        self.runner = runner
        self.tiling = tiling
        self.tiles = TiledPrediction(tiling, runner.metadata)
        self.model_hw = self.tiles.model_hw
        limits = [v for v in (runner.max_batch, tile_batch or default_tile_batch(self.model_hw)) if v]
        self.max_tiles = min(limits)
        # Serializes runner calls the backend cannot run concurrently (the Detector's lock).
        self._lock = lock if lock is not None and not runner.concurrent else nullcontext()
        self.device_writer: Optional[ChunkRunner] = None

    def grid(self, frame_hw: Tuple[int, int]) -> TileGrid:
        """The grid of a frame of (H, W) as tiled (after resizing to ``tiling.frame``, if set)."""
        return self.tiles.grid(frame_hw)

    def run(
        self, frames: List[np.ndarray], clock: Optional[Dict[str, float]] = None
    ) -> List[Tuple[np.ndarray, float]]:
        """Stitched maps at each frame's own size and their scores; ``clock`` (if given) gets
        the seconds spent in preprocess, inference and postprocess added."""
        infer = [0.0]  # seconds inside the runner

        def run_batch(batch: np.ndarray) -> np.ndarray:  # [n,3,h,w] -> maps [n,1,h,w]
            t = time.perf_counter()
            with self._lock:
                maps = self.runner.infer({INPUT_NAME: batch})["anomaly_map"]
            infer[0] += time.perf_counter() - t
            return maps

        def run_chunk(fitted: List[np.ndarray], grids: List[TileGrid], chunk: List[Slot]) -> np.ndarray:
            done = self.device_writer(fitted, grids, chunk) if self.device_writer is not None else None
            if done is None:  # no device path, or a CUDA error: the CPU crops from now on
                return run_batch(self.tiles.tile_batch(fitted, grids, chunk))
            outputs, ready = done
            infer[0] += time.perf_counter() - ready
            return outputs["anomaly_map"]

        phases: Dict[str, float] = {}
        results = self.tiles.predict(frames, run_batch, self.max_tiles, run_chunk, phases)
        if clock is not None:
            for key, value in (
                ("preprocess", phases["tiles"] - infer[0]),
                ("inference", infer[0]),
                ("postprocess", phases["stitch"]),
            ):
                clock[key] = clock.get(key, 0.0) + value
        return results
