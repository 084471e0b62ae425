"""Tiled prediction, the one loop: frames -> fitted -> grid tiles -> batches -> run -> stitch -> max.

Torch-free. The runtime's TiledRunner (rd_edge.runtime.tiled) and the torch side's
rd_edge.tiles.predict_tiled are thin adapters: each passes a batch callable that runs the model
on preprocessed tiles, float32 [n,3,h,w] RGB in [0,1] -> anomaly maps [n,h,w] (or [n,1,h,w]).

Per frame (rules in rd_edge.core.tiling):
1. fit: a model trained for one frame size (``tiling.frame``) sees other frames resized to that
   size by the model's resize rule, so its tiles keep their pixel scale;
2. the tiles of the grid, in ``grid.boxes`` order, are cropped and preprocessed (resized to the
   model's input by the same rule when the tile is of another size) and run in batches of at
   most ``max_tiles`` over all frames given together;
3. the tile maps (resized back to tile pixels) are blended into one map at the fitted
   resolution; the score is its maximum, the map is returned at the frame's own size.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .postprocess import resize_map
from .preprocess import ModelInput, preprocess_bgr
from .tiling import Stitcher, TileGrid, Tiling, fit_frame

Slot = Tuple[int, int]  # (frame index, tile index in its grid's boxes)
# float32 [n,3,h,w] preprocessed tiles -> anomaly maps [n,h,w] or [n,1,h,w]
BatchRun = Callable[[np.ndarray], np.ndarray]
# (fitted frames, their grids, the chunk's slots) -> maps [n,h,w] or [n,1,h,w] of the chunk's
# tiles: a runner that writes tiles itself (the CUDA path) instead of taking a CPU batch.
ChunkRun = Callable[[List[np.ndarray], List[TileGrid], List[Slot]], np.ndarray]


class TiledPrediction:
    """The tiling of one model: grids (cached per fitted frame size), tile batches, stitching."""

    def __init__(self, tiling: Tiling, model: ModelInput) -> None:
        self.tiling = tiling
        self.model_hw = (int(model.image_size[0]), int(model.image_size[1]))
        self.resize = model.resize
        self._stitchers: Dict[Tuple[int, int], Stitcher] = {}

    def stitcher(self, fitted_hw: Tuple[int, ...]) -> Stitcher:
        key = (int(fitted_hw[0]), int(fitted_hw[1]))
        if key not in self._stitchers:
            self._stitchers[key] = Stitcher(self.tiling.grid(key), self.tiling.window)
        return self._stitchers[key]

    def grid(self, frame_hw: Tuple[int, int]) -> TileGrid:
        """The grid of a frame of (H, W) as tiled (after fitting to ``tiling.frame``, if set)."""
        return self.stitcher(self.tiling.frame or frame_hw).grid

    def fit(self, frame: np.ndarray) -> np.ndarray:
        return fit_frame(frame, self.tiling.frame, self.resize)

    def tile_batch(
        self, fitted: Sequence[np.ndarray], grids: Sequence[TileGrid], chunk: Sequence[Slot]
    ) -> np.ndarray:
        """The chunk's tiles, preprocessed on the CPU -> float32 [n,3,h,w]."""
        batch = np.empty((len(chunk), 3) + self.model_hw, dtype=np.float32)
        for j, (i, k) in enumerate(chunk):
            th, tw = grids[i].tile
            y, x = grids[i].boxes[k]
            preprocess_bgr(fitted[i][y : y + th, x : x + tw], self.model_hw, out=batch[j], resize=self.resize)
        return batch

    def predict(
        self,
        frames: Sequence[np.ndarray],
        run: BatchRun,
        max_tiles: int,
        run_chunk: Optional[ChunkRun] = None,
        clock: Optional[Dict[str, float]] = None,
    ) -> List[Tuple[np.ndarray, float]]:
        """(map [H,W] at each frame's own size, score) per uint8 BGR frame.

        ``run`` takes CPU-preprocessed tile batches; ``run_chunk``, when given, replaces
        preprocessing and ``run`` for every chunk. ``clock`` (if given) gets the seconds of
        "tiles" (fit, crop, preprocess, run) and "stitch" added.
        """
        t0 = time.perf_counter()
        fitted = [self.fit(f) for f in frames]
        grids = [self.stitcher(f.shape[:2]).grid for f in fitted]
        slots = [(i, k) for i, g in enumerate(grids) for k in range(len(g))]  # every tile, in order
        tile_maps: List[List[np.ndarray]] = [[] for _ in grids]
        step = max(1, int(max_tiles))
        for start in range(0, len(slots), step):
            chunk = slots[start : start + step]
            maps = (
                run_chunk(fitted, grids, chunk) if run_chunk else run(self.tile_batch(fitted, grids, chunk))
            )
            maps = np.asarray(maps).reshape(len(chunk), *np.shape(maps)[-2:])  # [n,h,w]
            for j, (i, _) in enumerate(chunk):  # slots are in order: append keeps grid order
                tile_maps[i].append(maps[j])
        t1 = time.perf_counter()
        results = []
        for frame, fit, tiles in zip(frames, fitted, tile_maps):
            stitcher = self.stitcher(fit.shape[:2])
            if self.model_hw != stitcher.grid.tile:  # the model saw resized tiles: back to tile pixels
                tiles = [resize_map(m, stitcher.grid.tile) for m in tiles]
            stitched = stitcher.stitch(tiles)  # [H,W] at the fitted resolution
            results.append((resize_map(stitched, frame.shape[:2]), float(stitched.max())))
        if clock is not None:
            clock["tiles"] = clock.get("tiles", 0.0) + t1 - t0
            clock["stitch"] = clock.get("stitch", 0.0) + time.perf_counter() - t1
        return results
