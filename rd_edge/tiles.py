"""Tiles on the torch side: random training tiles, and per-frame tiled prediction.

Training samples tiles at random positions of the full-resolution good images (every region
is seen over the steps). Held-out scores, thresholds and evaluation run the runtime's own loop
(rd_edge.core.tiled_prediction): every frame becomes the tiling's grid, its tiles go through
the model, the tile maps are blended (rd_edge.core.tiling.Stitcher) and the score is the max.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .core.errors import DatasetError
from .core.preprocess import preprocess_bgr
from .core.tiled_prediction import TiledPrediction
from .core.tiling import Tiling, fit_frame


def common_frame_size(frames: Sequence[np.ndarray]) -> Optional[Tuple[int, int]]:
    """(H, W) shared by every frame, or None when sizes differ (the model then tiles any size)."""
    sizes = {f.shape[:2] for f in frames}
    return tuple(int(v) for v in sizes.pop()) if len(sizes) == 1 else None  # type: ignore[return-value]


def check_frames_fit(frames: Sequence[np.ndarray], tile: int, what: str) -> None:
    """DatasetError unless every frame is at least one tile in both directions."""
    small = [f.shape[:2] for f in frames if min(f.shape[:2]) < tile]
    if small:
        raise DatasetError(
            f"{len(small)} {what} image(s) are smaller than the tile of {tile} px "
            f"(e.g. {small[0][1]}x{small[0][0]}); use a smaller tile or train without tiling"
        )


def random_tiles(
    frames: Sequence[np.ndarray],
    count: int,
    tile: int,
    model_hw: Tuple[int, int],
    generator: torch.Generator,
    resize: str,
) -> torch.Tensor:
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
        rgb = preprocess_bgr(frame[y : y + tile, x : x + tile], model_hw, resize=resize)  # [3,h,w] in [0,1]
        out[j] = np.round(rgb * 255.0).astype(np.uint8)
    return torch.from_numpy(out)


def grid_tiles(
    frames: Sequence[np.ndarray], tiling: Tiling, model_hw: Tuple[int, int], resize: str
) -> torch.Tensor:
    """Every grid tile of ``frames`` -> uint8 [T,3,h,w] RGB (e.g. to re-estimate BatchNorm)."""
    tiles = []
    for frame in frames:
        fitted = fit_frame(frame, tiling.frame, resize)
        for crop in tiling.grid(fitted.shape[:2]).crops(fitted):
            tiles.append(np.round(preprocess_bgr(crop, model_hw, resize=resize) * 255.0).astype(np.uint8))
    return torch.from_numpy(np.stack(tiles))


@torch.no_grad()
def predict_tiled(
    model: torch.nn.Module,
    frames: Iterable[np.ndarray],
    tiling: Tiling,
    device: torch.device,
    batch_size: int = 16,
) -> Tuple[List[np.ndarray], np.ndarray]:
    """Per frame: the stitched map [H,W] at the frame's own size and its max (the score), by the
    runtime's loop (rd_edge.core.tiled_prediction) with the torch module as the batch callable.

    ``model``: the fused inference module, float32 [N,3,h,w] RGB in [0,1] -> (map, score).
    ``frames``: uint8 BGR [H,W,3] images of any size of at least one tile.
    """

    def run(batch: np.ndarray) -> np.ndarray:  # [n,3,h,w] -> maps [n,1,h,w]
        return model(torch.from_numpy(batch).to(device))[0].cpu().numpy()

    results = TiledPrediction(tiling, model.config).predict(list(frames), run, batch_size)
    return [m for m, _ in results], np.asarray([s for _, s in results], dtype=np.float32)


class TileTraining:
    """The tiled side of rd-train: full-resolution good frames, random tiles for the steps,
    grid tiles for BatchNorm re-estimation, per-frame tiled scores of the held-out frames."""

    def __init__(
        self,
        train_frames: List[np.ndarray],
        hold_frames: List[np.ndarray],
        tile: int,
        overlap: float,
        model_hw: Tuple[int, int],
        resize: str,
    ) -> None:
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
        return sum(
            len(self.tiling.grid(fit_frame(f, self.tiling.frame, self.resize).shape[:2]))
            for f in self.train_frames
        )

    def batch(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """uint8 [count,3,h,w] random training tiles."""
        return random_tiles(
            self.train_frames, count, self.tiling.tile[0], self.model_hw, generator, self.resize
        )

    def bn_images(self, max_frames: int = 8) -> torch.Tensor:
        """uint8 grid tiles of the first training frames, to re-estimate a random teacher's BN."""
        return grid_tiles(self.train_frames[:max_frames], self.tiling, self.model_hw, self.resize)

    def holdout_scores(self, model: torch.nn.Module, device: torch.device, batch_size: int) -> np.ndarray:
        """Per held-out frame: max of its stitched map, as the runtime computes it."""
        return predict_tiled(model, self.hold_frames, self.tiling, device, batch_size)[1]
