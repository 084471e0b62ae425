"""Tiles on the torch side: random training tiles, and per-frame tiled prediction.

Training samples tiles at random positions of the full-resolution good images (every region
is seen over the steps). Held-out scores, thresholds and evaluation run the way the runtime
will (rd_edge.runtime.tiled): every frame becomes the tiling's grid, its tiles go through the
model, the tile maps are blended (rd_edge.core.tiling.Stitcher) and the score is the max.
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .core.errors import DatasetError
from .core.postprocess import resize_map
from .core.preprocess import preprocess_bgr
from .core.tiling import Stitcher, Tiling, fit_frame


def common_frame_size(frames: Sequence[np.ndarray]) -> Optional[Tuple[int, int]]:
    """(H, W) shared by every frame, or None when sizes differ (the model then tiles any size)."""
    sizes = {f.shape[:2] for f in frames}
    return tuple(int(v) for v in sizes.pop()) if len(sizes) == 1 else None  # type: ignore[return-value]


def check_frames_fit(frames: Sequence[np.ndarray], tile: int, what: str) -> None:
    """DatasetError unless every frame is at least one tile in both directions."""
    small = [f.shape[:2] for f in frames if min(f.shape[:2]) < tile]
    if small:
        raise DatasetError(f"{len(small)} {what} image(s) are smaller than the tile of {tile} px "
                           f"(e.g. {small[0][1]}x{small[0][0]}); use a smaller tile or train without tiling")


def random_tiles(frames: Sequence[np.ndarray], count: int, tile: int, model_hw: Tuple[int, int],
                 generator: torch.Generator, resize: str) -> torch.Tensor:
    """``count`` tiles at random positions of random frames -> uint8 [count,3,h,w] RGB.

    Draws from ``generator`` only, so a resumed run continues the same sequence.
    """
    out = np.empty((count, 3) + tuple(model_hw), dtype=np.uint8)
    which = torch.randint(len(frames), (count,), generator=generator).tolist()
    unit = torch.rand((count, 2), generator=generator, dtype=torch.float64).numpy()
    for j, (i, (uy, ux)) in enumerate(zip(which, unit)):
        frame = frames[i]
        y = int(uy * (frame.shape[0] - tile + 1))  # uniform over every valid position
        x = int(ux * (frame.shape[1] - tile + 1))
        rgb = preprocess_bgr(frame[y:y + tile, x:x + tile], model_hw, resize=resize)  # [3,h,w] in [0,1]
        out[j] = np.round(rgb * 255.0).astype(np.uint8)
    return torch.from_numpy(out)


def grid_tiles(frames: Sequence[np.ndarray], tiling: Tiling, model_hw: Tuple[int, int],
               resize: str) -> torch.Tensor:
    """Every grid tile of ``frames`` -> uint8 [T,3,h,w] RGB (e.g. to re-estimate BatchNorm)."""
    tiles = []
    for frame in frames:
        fitted = fit_frame(frame, tiling.frame, resize)
        for crop in tiling.grid(fitted.shape[:2]).crops(fitted):
            tiles.append(np.round(preprocess_bgr(crop, model_hw, resize=resize) * 255.0).astype(np.uint8))
    return torch.from_numpy(np.stack(tiles))


@torch.no_grad()
def predict_tiled(model: torch.nn.Module, frames: Iterable[np.ndarray], tiling: Tiling,
                  device: torch.device, batch_size: int = 16) -> Tuple[List[np.ndarray], np.ndarray]:
    """Per frame: the stitched map [H,W] at the frame's own size and its max (the score).

    ``model``: the fused inference module, float32 [N,3,h,w] RGB in [0,1] -> (map, score).
    ``frames``: uint8 BGR [H,W,3] images of any size of at least one tile.
    """
    model_hw, rule = tuple(model.config.image_size), model.config.resize
    maps: List[np.ndarray] = []
    scores: List[float] = []
    stitchers = {}
    for frame in frames:
        fitted = fit_frame(frame, tiling.frame, rule)
        key = fitted.shape[:2]
        if key not in stitchers:
            stitchers[key] = Stitcher(tiling.grid(key), tiling.window)
        stitcher = stitchers[key]
        crops = stitcher.grid.crops(fitted)
        tile_maps: List[np.ndarray] = []
        for start in range(0, len(crops), batch_size):
            batch = np.stack([preprocess_bgr(c, model_hw, resize=rule) for c in crops[start:start + batch_size]])
            amap, _ = model(torch.from_numpy(batch).to(device))  # [n,1,h,w]
            tile_maps.extend(m for m in amap[:, 0].cpu().numpy())
        if model_hw != stitcher.grid.tile:
            tile_maps = [resize_map(m, stitcher.grid.tile) for m in tile_maps]
        stitched = stitcher.stitch(tile_maps)
        maps.append(resize_map(stitched, frame.shape[:2]))
        scores.append(float(stitched.max()))
    return maps, np.asarray(scores, dtype=np.float32)


class TileTraining:
    """The tiled side of rd-train: full-resolution good frames, random tiles for the steps,
    grid tiles for BatchNorm re-estimation, per-frame tiled scores of the held-out frames."""

    def __init__(self, train_frames: List[np.ndarray], hold_frames: List[np.ndarray], tile: int,
                 overlap: float, model_hw: Tuple[int, int], resize: str) -> None:
        check_frames_fit(train_frames, tile, "training")
        check_frames_fit(hold_frames, tile, "held-out")
        self.train_frames, self.hold_frames = train_frames, hold_frames
        self.model_hw = tuple(model_hw)
        self.resize = resize  # the model's rule, for fitting frames and resizing tiles
        # A model trained on one frame size is calibrated for that size (the runtime resizes
        # other frames to it); mixed sizes give a model for any size.
        self.tiling = Tiling((tile, tile), overlap, frame=common_frame_size(train_frames + hold_frames))

    def n_grid_tiles(self) -> int:
        """Tiles of one grid pass over the training frames (the tiled 'epoch')."""
        return sum(len(self.tiling.grid(fit_frame(f, self.tiling.frame, self.resize).shape[:2]))
                   for f in self.train_frames)

    def batch(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """uint8 [count,3,h,w] random training tiles."""
        return random_tiles(self.train_frames, count, self.tiling.tile[0], self.model_hw, generator, self.resize)

    def bn_images(self, max_frames: int = 8) -> torch.Tensor:
        """uint8 grid tiles of the first training frames, to re-estimate a random teacher's BN."""
        return grid_tiles(self.train_frames[:max_frames], self.tiling, self.model_hw, self.resize)

    def holdout_scores(self, model: torch.nn.Module, device: torch.device, batch_size: int) -> np.ndarray:
        """Per held-out frame: max of its stitched map, as the runtime computes it."""
        return predict_tiled(model, self.hold_frames, self.tiling, device, batch_size)[1]
