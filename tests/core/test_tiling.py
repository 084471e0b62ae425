"""Tiling geometry, windows, stitching and the metadata that carries them (torch-free)."""

import json

import numpy as np
import pytest

from rd_edge.core.errors import MetadataError
from rd_edge.core.metadata import ModelMetadata
from rd_edge.core.tiling import Stitcher, Tiling, TilingError, tile_borders, tile_starts, window_1d


@pytest.mark.parametrize(
    "length,tile,overlap",
    [
        (2448, 256, 0.25),
        (2048, 256, 0.25),
        (256, 256, 0.5),
        (1000, 256, 0.0),
        (300, 256, 0.9),
        (257, 256, 0.25),
    ],
)
def test_tiles_cover_the_axis_exactly_with_at_least_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] == length - tile  # last tile aligned to the border
    assert starts == sorted(set(starts))
    gaps = np.diff(starts)
    assert (gaps <= tile - round(overlap * tile)).all()  # overlap never below the asked one
    covered = np.zeros(length, int)
    for s in starts:
        covered[s : s + tile] += 1
    assert covered.min() >= 1


def test_camera_frame_grid_size():
    # 2448x2048 at 256 with a quarter overlap: stride 192 -> 13 columns, 11 rows.
    grid = Tiling((256, 256), 0.25).grid((2048, 2448))
    assert (len(grid.ys), len(grid.xs), len(grid)) == (11, 13, 143)
    assert all(c.shape == (256, 256, 3) for c in grid.crops(np.zeros((2048, 2448, 3), np.uint8)))


def test_a_frame_smaller_than_a_tile_is_a_clear_error():
    with pytest.raises(TilingError, match="smaller than the model's tile of 256"):
        Tiling((256, 256)).grid((200, 1000))


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_windows_are_positive_symmetric_and_peak_in_the_middle(kind):
    w = window_1d(64, kind)
    assert (w > 0).all() and w.max() <= 1.0
    np.testing.assert_allclose(w, w[::-1], atol=1e-7)
    assert w[31] == w.max() and w[0] < 0.05


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_stitching_keeps_a_constant_and_a_smooth_field_exactly(kind):
    grid = Tiling((32, 48), 0.25).grid((100, 130))
    yy, xx = np.mgrid[0:100, 0:130].astype(np.float32)
    field = np.sin(yy / 9) + np.cos(xx / 13)
    maps = [c.copy() for c in grid.crops(field)]  # tiles that agree where they overlap
    np.testing.assert_allclose(Stitcher(grid, kind).stitch(maps), field, atol=1e-5)
    const = Stitcher(grid, kind).stitch([np.full((32, 48), 2.5, np.float32)] * len(grid))
    np.testing.assert_allclose(const, 2.5, atol=1e-5)


def test_disagreeing_tiles_blend_smoothly_across_the_overlap():
    # Two tiles side by side with values 0 and 1: the stitched row goes 0 -> 1 monotonically
    # inside the overlap instead of jumping at a tile border.
    grid = Tiling((16, 32), 0.5).grid((16, 48))
    assert grid.xs == (0, 16)
    row = Stitcher(grid).stitch([np.zeros((16, 32), np.float32), np.ones((16, 32), np.float32)])[0]
    assert (row[:16] < 1e-3).all() and (row[32:] > 1 - 1e-3).all()
    assert (np.diff(row[16:32]) > 0).all()
    assert tile_borders(grid) == ([], [16, 32])


def test_stitching_checks_the_tile_count():
    grid = Tiling((16, 16)).grid((40, 40))
    with pytest.raises(TilingError, match=f"expected {len(grid)} tile maps"):
        Stitcher(grid).stitch([np.zeros((16, 16))])


def _meta(**kw):
    return ModelMetadata(
        backbone="resnet18",
        image_size=[256, 256],
        threshold=0.5,
        score_stats=None,
        checkpoint_sha256="0" * 64,
        exporter_version="t",
        **kw,
    )


def test_tiling_round_trips_through_the_metadata_json():
    tiling = Tiling((256, 256), 0.25, frame=(2048, 2448), window="linear")
    meta = ModelMetadata.from_json(_meta(tiling=tiling.to_dict()).to_json())
    assert meta.tile_spec() == tiling
    assert json.loads(meta.to_json())["tiling"] == {
        "tile": [256, 256],
        "overlap": 0.25,
        "frame": [2048, 2448],
        "window": "linear",
    }
    anyframe = ModelMetadata.from_json(_meta(tiling=Tiling((256, 256)).to_dict()).to_json())
    assert anyframe.tiling["frame"] == "any" and anyframe.tile_spec().frame is None


def test_old_metadata_without_tiling_still_loads_as_untiled():
    data = json.loads(_meta().to_json())
    del data["tiling"]
    assert ModelMetadata.from_json(json.dumps(data)).tile_spec() is None


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"tile": [0, 256]}, "tile must be"),
        ({"tile": [256, 256], "overlap": 1.0}, "overlap"),
        ({"tile": [256, 256], "window": "box"}, "window"),
        ([256], "must be an object"),
        ({"tile": [256, 256], "frame": "all"}, "frame must be"),
    ],
)
def test_invalid_tiling_metadata_is_refused_with_the_reason(bad, match):
    data = json.loads(_meta().to_json())
    data["tiling"] = bad
    with pytest.raises(MetadataError, match=match):
        ModelMetadata.from_json(json.dumps(data), source="m.onnx")


def test_tiling_travels_in_the_engine_sidecar(tmp_path):
    from rd_edge.core.sidecar import EngineSidecar

    tiling = Tiling((256, 256), 0.25, frame=(1024, 1024))
    sidecar = EngineSidecar("10.3", "Orin", "8.7", "fp16", 1, 32, "0" * 64, _meta(tiling=tiling.to_dict()))
    sidecar.write(tmp_path / "m.engine")
    assert EngineSidecar.read(tmp_path / "m.engine").metadata.tile_spec() == tiling


# ---- values, not shapes (issue 28): halves in rounding, the linear window, the grid as a rule ----


def _reference_starts(length: int, tile: int, overlap: float) -> list:
    """The grid rule of rd_edge.core.tiling written out independently: round half up with Decimal."""
    from decimal import ROUND_HALF_UP, Decimal

    rounded = int((Decimal(repr(overlap)) * tile).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    stride = max(1, tile - rounded)
    n = -(-(length - tile) // stride) + 1
    return [0] if n == 1 else [i * (length - tile) // (n - 1) for i in range(n)]


@pytest.mark.parametrize(
    "length,tile,overlap,starts",
    [
        (25, 10, 0.25, [0, 5, 10, 15]),  # 2.5 px of overlap round up to 3: stride 7, four tiles (not three)
        (24, 10, 0.25, [0, 7, 14]),
        (
            13,
            5,
            0.5,
            [0, 2, 4, 6, 8],
        ),  # odd tile: 2.5 -> 3, stride 2, ceil(8 / 2) + 1 = 5 tiles at i * 8 // 4
    ],
)
def test_grid_by_hand_with_halves(length, tile, overlap, starts):
    assert tile_starts(length, tile, overlap) == starts


def test_grid_follows_the_written_rule_for_any_frame():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=100, deadline=None, database=None)
    @hypothesis.given(
        tile=st.integers(1, 64),
        extra=st.integers(0, 400),
        overlap=st.sampled_from([0.0, 0.1, 0.125, 0.25, 0.3, 0.375, 0.5, 0.625, 0.75, 0.9]),
    )
    def check(tile, extra, overlap):
        starts = tile_starts(tile + extra, tile, overlap)
        assert starts == _reference_starts(tile + extra, tile, overlap)
        assert starts[0] == 0 and starts[-1] == extra

    check()


@pytest.mark.parametrize("window,blend", [("linear", [0.25, 0.75]), ("cosine", [0.14644661, 0.85355339])])
def test_stitching_weights_by_hand_for_each_window(window, blend):
    """Two 1x4 tiles over a 1x6 frame (starts 0 and 2): tile A is all 0, tile B all 1. Where they
    overlap (x = 2, 3) the map is B's weight share: linear w = .25 .75 .75 .25, cosine (Hann) w =
    .146 .854 .854 .146, so x=2 -> w_B[0] / (w_A[2] + w_B[0])."""
    tiling = Tiling(tile=(1, 4), overlap=0.5, window=window)
    grid = tiling.grid((1, 6))
    assert grid.boxes == [(0, 0), (0, 2)]
    out = Stitcher(grid, window).stitch([np.zeros((1, 4), np.float32), np.ones((1, 4), np.float32)])
    np.testing.assert_allclose(out[0], [0, 0, *blend, 1, 1], atol=1e-6)


def test_stitching_is_the_weighted_mean_for_any_grid():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=40, deadline=None, database=None)
    @hypothesis.given(
        th=st.integers(2, 9),
        tw=st.integers(2, 9),
        eh=st.integers(0, 12),
        ew=st.integers(0, 12),
        overlap=st.sampled_from([0.0, 0.25, 0.5]),
        window=st.sampled_from(["cosine", "linear"]),
        seed=st.integers(0, 2**16),
    )
    def check(th, tw, eh, ew, overlap, window, seed):
        grid = Tiling(tile=(th, tw), overlap=overlap, window=window).grid((th + eh, tw + ew))
        maps = list(np.random.default_rng(seed).random((len(grid), th, tw)).astype(np.float32))
        num = np.zeros(grid.frame)
        den = np.zeros(grid.frame)
        for (y, x), m in zip(grid.boxes, maps):  # the definition, in float64
            w = np.outer(window_1d(th, window), window_1d(tw, window)).astype(np.float64)
            num[y : y + th, x : x + tw] += w * m
            den[y : y + th, x : x + tw] += w
        np.testing.assert_allclose(Stitcher(grid, window).stitch(maps), num / den, rtol=1e-5, atol=1e-6)

    check()
