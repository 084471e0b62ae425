"""The one tile -> run -> stitch loop: values against the tiling written out, any chunking, any map layout."""

from types import SimpleNamespace

import numpy as np
import pytest

from rd_edge.core.metadata import RESIZE_AREA_LINEAR
from rd_edge.core.postprocess import resize_map
from rd_edge.core.preprocess import preprocess_bgr
from rd_edge.core.tiled_prediction import TiledPrediction
from rd_edge.core.tiling import Stitcher, Tiling, fit_frame

MODEL = SimpleNamespace(image_size=(16, 20), resize=RESIZE_AREA_LINEAR)


def channel_mix(batch):
    """A stand-in model: a map from every channel, unequal weights -> [n,1,h,w]."""
    return np.tensordot(np.array([0.5, 0.3, 0.2], np.float32), batch, axes=([0], [1]))[:, None] ** 2


def frames():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, hw + (3,), dtype=np.uint8) for hw in [(50, 70), (64, 64), (40, 90)]]


def by_hand(frame, tiling):
    fitted = fit_frame(frame, tiling.frame, MODEL.resize)
    grid = tiling.grid(fitted.shape[:2])
    maps = [
        channel_mix(preprocess_bgr(c, MODEL.image_size, resize=MODEL.resize)[None])[0, 0]
        for c in grid.crops(fitted)
    ]
    stitched = Stitcher(grid, tiling.window).stitch([resize_map(m, grid.tile) for m in maps])
    return resize_map(stitched, frame.shape[:2]), float(stitched.max())


@pytest.mark.parametrize(
    "tiling", [Tiling((32, 40), 0.25), Tiling((32, 40), 0.5, frame=(48, 60), window="linear")]
)
@pytest.mark.parametrize("max_tiles", [1, 5, 1000])
def test_maps_and_scores_equal_the_tiling_written_out_for_any_chunking(tiling, max_tiles):
    got = TiledPrediction(tiling, MODEL).predict(frames(), channel_mix, max_tiles)
    for (amap, score), frame in zip(got, frames()):
        want_map, want_score = by_hand(frame, tiling)
        assert amap.shape == frame.shape[:2]
        np.testing.assert_allclose(amap, want_map, rtol=1e-6, atol=1e-7)
        assert score == pytest.approx(want_score, rel=1e-6)


def test_a_chunk_runner_replaces_cpu_preprocessing_and_maps_may_be_flat():
    tiling = Tiling((32, 40), 0.25)
    tiles = TiledPrediction(tiling, MODEL)
    seen = []

    def run_chunk(fitted, grids, chunk):  # what the CUDA path does: its own tile batch
        seen.append(len(chunk))
        return channel_mix(tiles.tile_batch(fitted, grids, chunk))[:, 0]  # [n,h,w]

    def never(batch):
        raise AssertionError("run must not be called when run_chunk is given")

    clock = {}
    got = tiles.predict(frames(), never, 4, run_chunk, clock)
    want = tiles.predict(frames(), channel_mix, 4)
    assert max(seen) == 4 and sum(seen) == sum(len(tiles.grid(f.shape[:2])) for f in frames())
    for (a, s), (b, t) in zip(got, want):
        np.testing.assert_array_equal(a, b)
        assert s == t
    assert set(clock) == {"tiles", "stitch"} and all(v >= 0 for v in clock.values())


def test_grid_is_of_the_fitted_frame():
    tiles = TiledPrediction(Tiling((32, 40), 0.25, frame=(48, 60)), MODEL)
    assert tiles.grid((500, 700)).frame == (48, 60)
