"""Tiling of high-resolution frames: the grid, the blending window and the stitching.

Torch-free; training, evaluation, the runtime and the C++ example use the same rules:

- Grid: along each axis of length L with tile t and overlap fraction o, the nominal stride is
  s = t - floor(o * t + 0.5) (at least 1; halves round up, as in C++); n = ceil((L - t) / s) + 1
  tiles start at ``i * (L - t) // (n - 1)`` (integer division), so the first tile starts at 0,
  the last one ends exactly at the border (no padding) and neighbours overlap by at least o * t.
  A frame smaller than a tile along an axis cannot be tiled (TilingError).
- Window: per tile a separable weight w(y) * w(x), strictly positive so that a frame pixel
  covered by one tile only keeps that tile's value: "cosine" (Hann) w(i) = 0.5 - 0.5 cos(2 pi
  (i + 0.5) / t), or "linear" (triangle) w(i) = 1 - |2 (i + 0.5) / t - 1|. A tile's edge, where
  the map's blur saw its reflected border, thus weighs almost nothing where a neighbour covers it.
- Stitching: map(p) = sum_k w_k(p) map_k(p) / sum_k w_k(p), in float32; score = max of the map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import MetadataError, RdEdgeError

WINDOWS = ("cosine", "linear")
DEFAULT_OVERLAP = 0.25
ANY_FRAME = "any"


class TilingError(RdEdgeError):
    """A frame cannot be tiled as the model's tiling asks (e.g. smaller than a tile)."""


@dataclass(frozen=True)
class Tiling:
    """How a tiled model sees frames: ``tile`` (h, w) in frame pixels, ``overlap`` fraction in
    [0, 1), ``frame`` (H, W) the model was trained and calibrated for (None: any size) and the
    blending ``window``."""

    tile: Tuple[int, int]
    overlap: float = DEFAULT_OVERLAP
    frame: Optional[Tuple[int, int]] = None
    window: str = "cosine"

    def __post_init__(self) -> None:
        _check_pair(self.tile, "tile")
        if self.frame is not None:
            _check_pair(self.frame, "frame")
        if not (isinstance(self.overlap, (int, float)) and 0.0 <= self.overlap < 1.0):
            raise MetadataError(f"tiling overlap must be a fraction in [0, 1), found {self.overlap!r}")
        if self.window not in WINDOWS:
            raise MetadataError(f"tiling window must be one of {', '.join(WINDOWS)}, found {self.window!r}")

    def to_dict(self) -> Dict[str, Any]:
        return {
            "tile": list(self.tile),
            "overlap": float(self.overlap),
            "frame": list(self.frame) if self.frame is not None else ANY_FRAME,
            "window": self.window,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "model") -> "Tiling":
        """Parse the metadata's ``tiling`` object; MetadataError naming ``source`` when invalid."""
        if not isinstance(data, dict) or "tile" not in data:
            raise MetadataError(f"{source}: tiling must be an object with 'tile' [h, w], found {data!r}")
        frame = data.get("frame", ANY_FRAME)
        try:
            return cls(
                tile=tuple(data["tile"]) if isinstance(data["tile"], list) else data["tile"],
                overlap=data.get("overlap", DEFAULT_OVERLAP),
                frame=None if frame == ANY_FRAME else (tuple(frame) if isinstance(frame, list) else frame),
                window=data.get("window", "cosine"),
            )
        except MetadataError as exc:
            raise MetadataError(f"{source}: {exc}; re-export the model") from None

    def grid(self, frame_hw: Tuple[int, int]) -> "TileGrid":
        """The tile grid of a frame of (H, W) pixels."""
        return TileGrid.build(frame_hw, self.tile, self.overlap)


def _check_pair(value: Any, name: str) -> None:
    if not (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise MetadataError(f"tiling {name} must be [h, w] positive integers, found {value!r}")


def tile_starts(length: int, tile: int, overlap: float) -> List[int]:
    """Start offsets along one axis: first at 0, last at length - tile, evenly spread."""
    if length < tile:
        raise TilingError(
            f"a frame side of {length} px is smaller than the model's tile of {tile} px; "
            f"expected frames of at least the tile size (resize small frames up, or "
            f"use a model trained without tiling)"
        )
    stride = max(1, tile - int(math.floor(overlap * tile + 0.5)))
    n = math.ceil((length - tile) / stride) + 1
    if n == 1:
        return [0]
    return [i * (length - tile) // (n - 1) for i in range(n)]


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one frame: ``boxes`` are (y, x) top-left corners, row-major; every tile is
    ``tile`` (h, w) and lies inside the frame."""

    frame: Tuple[int, int]
    tile: Tuple[int, int]
    ys: Tuple[int, ...]
    xs: Tuple[int, ...]

    @classmethod
    def build(cls, frame_hw: Tuple[int, int], tile_hw: Tuple[int, int], overlap: float) -> "TileGrid":
        (fh, fw), (th, tw) = frame_hw, tile_hw
        return cls(
            (int(fh), int(fw)),
            (int(th), int(tw)),
            tuple(tile_starts(int(fh), int(th), overlap)),
            tuple(tile_starts(int(fw), int(tw), overlap)),
        )

    @property
    def boxes(self) -> List[Tuple[int, int]]:
        return [(y, x) for y in self.ys for x in self.xs]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def crops(self, frame: np.ndarray) -> List[np.ndarray]:
        """Views of ``frame`` [H,W,...] for each tile (no copies), in ``boxes`` order."""
        th, tw = self.tile
        return [frame[y : y + th, x : x + tw] for y, x in self.boxes]


def fit_frame(frame: np.ndarray, size_hw: Optional[Tuple[int, int]], rule: str) -> np.ndarray:
    """``frame`` resized to ``size_hw`` by the model's resize ``rule`` (as preprocessing does);
    unchanged when it already has that size or ``size_hw`` is None."""
    from .preprocess import resize_bgr  # preprocess -> metadata -> tiling: imported on use

    if size_hw is None:
        return frame
    return resize_bgr(frame, (int(size_hw[0]), int(size_hw[1])), rule)


def window_1d(length: int, kind: str = "cosine") -> np.ndarray:
    """Blending weights along one tile axis, float32 [length], strictly positive."""
    centres = (np.arange(length, dtype=np.float64) + 0.5) / length  # in (0, 1)
    if kind == "cosine":
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * centres)
    elif kind == "linear":
        w = 1.0 - np.abs(2.0 * centres - 1.0)
    else:
        raise MetadataError(f"tiling window must be one of {', '.join(WINDOWS)}, found {kind!r}")
    return w.astype(np.float32)


def window_2d(tile_hw: Tuple[int, int], kind: str = "cosine") -> np.ndarray:
    """float32 [h, w] = outer product of the 1-D windows."""
    return np.outer(window_1d(tile_hw[0], kind), window_1d(tile_hw[1], kind)).astype(np.float32)


class Stitcher:
    """Blends tile maps into one frame map; reuse one per grid (the weight sum is cached)."""

    def __init__(self, grid: TileGrid, window: str = "cosine") -> None:
        self.grid = grid
        self.weight = window_2d(grid.tile, window)  # [th, tw]
        th, tw = grid.tile
        total = np.zeros(grid.frame, dtype=np.float32)
        for y, x in grid.boxes:
            total[y : y + th, x : x + tw] += self.weight
        self._inverse_total = (1.0 / total).astype(np.float32)  # > 0 everywhere: the grid covers the frame

    def stitch(self, maps: Sequence[np.ndarray]) -> np.ndarray:
        """Tile maps ([th, tw] each, ``grid.boxes`` order) -> float32 [H, W] frame map."""
        if len(maps) != len(self.grid):
            raise TilingError(f"expected {len(self.grid)} tile maps for this grid, found {len(maps)}")
        th, tw = self.grid.tile
        out = np.zeros(self.grid.frame, dtype=np.float32)
        for (y, x), amap in zip(self.grid.boxes, maps):
            out[y : y + th, x : x + tw] += self.weight * amap
        out *= self._inverse_total
        return out


def stitch(maps: Sequence[np.ndarray], grid: TileGrid, window: str = "cosine") -> np.ndarray:
    """One-off :meth:`Stitcher.stitch`."""
    return Stitcher(grid, window).stitch(maps)


def tile_borders(grid: TileGrid) -> Tuple[List[int], List[int]]:
    """Rows and columns where a tile starts or ends inside the frame (where seams would show)."""
    th, tw = grid.tile
    rows = sorted({y for y in grid.ys if y > 0} | {y + th for y in grid.ys if y + th < grid.frame[0]})
    cols = sorted({x for x in grid.xs if x > 0} | {x + tw for x in grid.xs if x + tw < grid.frame[1]})
    return rows, cols
