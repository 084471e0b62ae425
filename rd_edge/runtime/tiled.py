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

from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Dict, List, Optional, Tuple

import numpy as np

from rd_edge.core.metadata import INPUT_NAME
from rd_edge.core.postprocess import resize_map
from rd_edge.core.preprocess import preprocess_bgr
from rd_edge.core.tiling import Stitcher, TileGrid, Tiling, fit_frame

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


Slot = Tuple[int, int]  # (frame index, tile index in its grid's boxes)
# (frames, grids, slots) -> (runner outputs for the slots, time.perf_counter() when the tiles were ready)
# None: the device path gave up (e.g. a CUDA error); the tiles are then cropped on the CPU.
ChunkRunner = Callable[[List[np.ndarray], List[TileGrid], List[Slot]],
                       Optional[Tuple[Dict[str, np.ndarray], float]]]


class TiledRunner:
    """Runs a tiled model on lists of uint8 BGR frames; ``run`` returns (map [H,W], score) each.

    ``tile_batch`` caps the tiles per runner call (None: default_tile_batch of the model's
    input, a bound on memory; 1 runs tile by tile, for comparison). ``device_writer``, when given, writes the tiles of a chunk
    straight into the runner's device input and runs it (the CUDA path); else tiles are cropped
    and converted on the CPU into a batch of the call's own (threads may share a TiledRunner).
    """

    def __init__(self, runner: Runner, tiling: Tiling, tile_batch: Optional[int] = None,
                 lock: Optional[ContextManager[Any]] = None) -> None:
        if tile_batch is not None and int(tile_batch) < 1:
            raise ValueError(f"tile_batch must be >= 1, got {tile_batch}")
        self.runner = runner
        self.tiling = tiling
        meta = runner.metadata
        self.model_hw = (meta.height, meta.width)
        limits = [v for v in (runner.max_batch, tile_batch or default_tile_batch(self.model_hw)) if v]
        self.max_tiles = min(limits)
        self._stitchers: Dict[Tuple[int, int], Stitcher] = {}
        # Serializes runner calls the backend cannot run concurrently (the Detector's lock).
        self._lock = lock if lock is not None and not runner.concurrent else nullcontext()
        self.device_writer: Optional[ChunkRunner] = None

    def grid(self, frame_hw: Tuple[int, int]) -> TileGrid:
        """The grid of a frame of (H, W) as tiled (after resizing to ``tiling.frame``, if set)."""
        return self._stitcher(self.tiling.frame or frame_hw).grid

    def _stitcher(self, frame_hw: Tuple[int, int]) -> Stitcher:
        key = tuple(int(v) for v in frame_hw)
        if key not in self._stitchers:
            self._stitchers[key] = Stitcher(self.tiling.grid(key), self.tiling.window)
        return self._stitchers[key]

    def run(self, frames: List[np.ndarray], clock: Optional[Dict[str, float]] = None
            ) -> List[Tuple[np.ndarray, float]]:
        """Stitched maps at each frame's own size and their scores; ``clock`` (if given) gets
        the seconds spent in preprocess, inference and postprocess added."""
        import time

        clock = clock if clock is not None else {}
        t0 = time.perf_counter()
        fitted = [fit_frame(f, self.tiling.frame, self.runner.metadata.resize) for f in frames]
        grids = [self._stitcher(f.shape[:2]).grid for f in fitted]
        slots = [(i, k) for i, g in enumerate(grids) for k in range(len(g))]  # every tile, in order
        tile_maps: List[List[np.ndarray]] = [[None] * len(g) for g in grids]  # type: ignore[list-item]
        step = self.max_tiles
        infer = 0.0
        for start in range(0, len(slots), step):
            chunk = slots[start:start + step]
            outputs, tb = self._infer_chunk(fitted, grids, chunk)
            infer += time.perf_counter() - tb
            maps = outputs["anomaly_map"]  # [n,1,h,w]
            for j, (i, k) in enumerate(chunk):
                tile_maps[i][k] = maps[j, 0]
        t1 = time.perf_counter()
        results = []
        for frame, fit, grid, tiles in zip(frames, fitted, grids, tile_maps):
            if self.model_hw != grid.tile:  # the model saw resized tiles: maps back to tile pixels
                tiles = [resize_map(m, grid.tile) for m in tiles]
            stitched = self._stitcher(fit.shape[:2]).stitch(tiles)  # [H,W] at the tiled resolution
            results.append((resize_map(stitched, frame.shape[:2]), float(stitched.max())))
        t2 = time.perf_counter()
        for key, value in (("preprocess", t1 - t0 - infer), ("inference", infer), ("postprocess", t2 - t1)):
            clock[key] = clock.get(key, 0.0) + value
        return results

    def _infer_chunk(self, frames: List[np.ndarray], grids: List[TileGrid],
                     chunk: List[Slot]) -> Tuple[Dict[str, np.ndarray], float]:
        """Preprocess the chunk's tiles and run them as one batch; returns (outputs, the time
        preprocessing ended)."""
        import time

        if self.device_writer is not None:
            done = self.device_writer(frames, grids, chunk)
            if done is not None:
                return done  # else a CUDA error: the CPU crops from now on
        batch = np.empty((len(chunk), 3) + self.model_hw, dtype=np.float32)  # [n,3,h,w]
        boxes = {i: grids[i].boxes for i, _ in chunk}
        for j, (i, k) in enumerate(chunk):
            th, tw = grids[i].tile
            y, x = boxes[i][k]
            preprocess_bgr(frames[i][y:y + th, x:x + tw], self.model_hw, out=batch[j],
                           resize=self.runner.metadata.resize)  # [3,h,w] slot
        done = time.perf_counter()
        with self._lock:
            return self.runner.infer({INPUT_NAME: batch}), done

