"""Tiled inference: parity with a plain torch tiling, one batch per frame, no seams."""

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import make_checkpoint  # noqa: E402

from rd_edge.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402
from rd_edge.core.tiling import Tiling, tile_borders  # noqa: E402
from rd_edge.runtime import Detector, load_runner  # noqa: E402
from rd_edge.runtime.backends.base import Runner  # noqa: E402

TILE = 64
FRAME_HW = (150, 200)  # 3 x 4 tiles of 64 with a quarter overlap


@pytest.fixture(scope="module")
def tiled_model(tmp_path_factory, demo_category) -> Dict[str, Path]:
    """A random-weight resnet18 at 64 px whose checkpoint says: tiles of 64, overlap 0.25."""
    from rd_export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("tiled")
    ckpt = make_checkpoint(root / "tiled.pt", "resnet18", TILE, data_dir=str(demo_category))
    data = read_checkpoint(ckpt)
    data["tiling"] = Tiling((TILE, TILE), 0.25).to_dict()
    save_checkpoint(ckpt, {k: v for k, v in data.items() if k not in ("format", "format_version")})
    onnx_path = root / "tiled.onnx"
    export_onnx(ckpt, onnx_path, verify=False)
    return {"pt": ckpt, "onnx": onnx_path}


def good_frame(seed: int = 0, hw=FRAME_HW) -> np.ndarray:
    from rd_edge.data.synthetic import render_demo_image

    image = render_demo_image("weave", "good", max(hw), np.random.default_rng(seed)).image
    return np.ascontiguousarray(image[: hw[0], : hw[1]])


def torch_reference(pt: Path, frame: np.ndarray, tile: int, overlap: float) -> np.ndarray:
    """The tiling written out plainly: loops over the grid, the torch model tile by tile,
    Hann weights, weighted average. Independent of rd_edge.core.tiling on purpose."""
    model = load_checkpoint(pt)
    h, w = frame.shape[:2]

    def starts(length):
        stride = tile - round(overlap * tile)
        n = -(-(length - tile) // stride) + 1
        return [0] if n == 1 else [i * (length - tile) // (n - 1) for i in range(n)]

    hann = 0.5 - 0.5 * torch.cos(2 * torch.pi * (torch.arange(tile, dtype=torch.float64) + 0.5) / tile)
    weight = torch.outer(hann, hann)
    acc = torch.zeros(h, w, dtype=torch.float64)
    total = torch.zeros(h, w, dtype=torch.float64)
    rgb = torch.from_numpy(frame[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255.0  # [3,H,W]
    with torch.no_grad():
        for y in starts(h):
            for x in starts(w):
                amap, _ = model(rgb[None, :, y : y + tile, x : x + tile])
                acc[y : y + tile, x : x + tile] += weight * amap[0, 0].double()
                total[y : y + tile, x : x + tile] += weight
    return (acc / total).float().numpy()


def test_tiled_detector_map_equals_a_plain_torch_tiling(tiled_model):
    frame = good_frame(1)
    want = torch_reference(tiled_model["pt"], frame, TILE, 0.25)
    with Detector(tiled_model["onnx"]) as det:
        pred = det.predict(frame)
    assert pred.anomaly_map.shape == FRAME_HW
    np.testing.assert_allclose(pred.anomaly_map, want, atol=1e-4)
    assert pred.score == pytest.approx(float(want.max()), abs=1e-4)


class CountingRunner(Runner):
    """The real ONNX Runtime runner, recording the batch of every call."""

    def __init__(self, inner: Runner, max_batch: Optional[int] = None) -> None:
        self.inner, self.name, self.metadata = inner, inner.name, inner.metadata
        self.input_names, self.output_names = inner.input_names, inner.output_names
        self.max_batch = max_batch
        self.calls: List[int] = []

    def infer_impl(self, feed):
        self.calls.append(len(feed["image"]))
        return self.inner.infer(feed)

    def close(self):
        self.inner.close()


@pytest.mark.parametrize(
    "max_batch,tile_batch,calls", [(None, None, [24]), (10, None, [10, 10, 4]), (None, 1, [1] * 24)]
)
def test_all_tiles_of_the_frames_go_through_the_runner_as_one_batch(
    tiled_model, max_batch, tile_batch, calls
):
    frames = [good_frame(2), good_frame(3)]  # 12 tiles each
    with Detector(tiled_model["onnx"]) as det:
        expected = det.predict(frames)
    runner = CountingRunner(load_runner(tiled_model["onnx"]), max_batch)
    with Detector(runner, tile_batch=tile_batch) as det:
        preds = det.predict(frames)
    assert runner.calls == calls
    for got, want in zip(preds, expected):
        np.testing.assert_allclose(got.anomaly_map, want.anomaly_map, atol=1e-5)
        assert got.score == pytest.approx(want.score, abs=1e-5)
        assert set(got.timings) == {"preprocess_ms", "inference_ms", "postprocess_ms", "total_ms"}


def _jumps(amap: np.ndarray):
    """|difference| between neighbouring pixels across rows (dy) and columns (dx)."""
    return np.abs(np.diff(amap, axis=0)), np.abs(np.diff(amap, axis=1))


def seam_excess(amap: np.ndarray, rows: List[int], cols: List[int]) -> float:
    """Largest step across a tile border divided by the largest step anywhere else (> 1: seam)."""
    dy, dx = _jumps(amap)
    on_rows = np.zeros(dy.shape[0], bool)
    on_rows[[r - 1 for r in rows]] = True  # the step from row r-1 to row r
    on_cols = np.zeros(dx.shape[1], bool)
    on_cols[[c - 1 for c in cols]] = True
    border = max(dy[on_rows].max(initial=0), dx[:, on_cols].max(initial=0))
    elsewhere = max(dy[~on_rows].max(), dx[:, ~on_cols].max())
    return float(border / elsewhere)


def test_stitched_map_of_a_defect_free_frame_shows_no_seam(tiled_model):
    frame = good_frame(4, (200, 260))
    with Detector(tiled_model["onnx"]) as det:
        grid = det.tile_grid(frame.shape[:2])
        amap = det.predict(frame).anomaly_map
        rows, cols = tile_borders(grid)
        assert rows and cols
        # The values along the tile borders lie within the spread of the values elsewhere...
        border = np.zeros(amap.shape, bool)
        border[rows, :] = True
        border[:, cols] = True
        assert amap[~border].min() <= amap[border].min() and amap[border].max() <= amap[~border].max()
        # ...and no step across a border is larger than the steps inside the tiles.
        excess = seam_excess(amap, rows, cols)
        assert excess <= 1.0
        # The same tiles butted together without blending do show seams: the check can fail.
        hard = Tiling((TILE, TILE), 0.0).grid(frame.shape[:2])
        crops = np.stack([c for c in hard.crops(frame)])[:, :, :, ::-1].transpose(0, 3, 1, 2) / np.float32(
            255
        )
        maps = det.runner.infer({"image": np.ascontiguousarray(crops, np.float32)})["anomaly_map"][:, 0]
        butted = np.zeros(frame.shape[:2], np.float32)
        for (y, x), m in zip(hard.boxes, maps):  # later tiles overwrite: hard cuts
            butted[y : y + TILE, x : x + TILE] = m
        print(f"seam excess: blended {excess:.2f}, butted {seam_excess(butted, *tile_borders(hard)):.2f}")
        assert seam_excess(butted, *tile_borders(hard)) > 1.5 > excess


# --- bounded memory on large frames (issue 21, cases 4 and 11) ---------------------------------------


def test_tiles_per_call_are_bounded_by_default_and_by_tile_batch(tiled_model):
    """A 400x500 frame is 88 tiles: never all in one call (4000x4000, 6,889 tiles, failed to allocate)."""
    frame = np.random.default_rng(0).integers(0, 256, (400, 500, 3), dtype=np.uint8)
    runner = CountingRunner(load_runner(tiled_model["onnx"]), None)
    with Detector(runner) as det:
        default = det.predict(frame)
    assert runner.calls == [64, 24]
    runner = CountingRunner(load_runner(tiled_model["onnx"]), None)
    with Detector(runner, tile_batch=30) as det:
        bounded = det.predict(frame)
    assert runner.calls == [30, 30, 28]
    np.testing.assert_allclose(bounded.anomaly_map, default.anomaly_map, atol=1e-5)


def test_rd_infer_tile_batch_and_the_pixel_cap(tiled_model, tmp_path, capsys):
    """--tile-batch reaches the Detector; a 631-byte JPEG declaring 20000x20000 is an error record at
    once for a tiled model (it needs every pixel: 1.2 GB), the other inputs are scored."""
    import json

    import cv2
    from helpers import jpeg_bomb

    from rd_edge.runtime.cli import build_parser, main

    assert build_parser().parse_args(["m.onnx", "x.png", "--tile-batch", "7"]).tile_batch == 7
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bomb.jpg").write_bytes(jpeg_bomb())
    cv2.imwrite(str(folder / "good.png"), good_frame(2))
    records = tmp_path / "r.jsonl"
    assert (
        main([str(tiled_model["onnx"]), str(folder), "--tile-batch", "16", "--json", str(records), "--quiet"])
        == 2
    )
    rows = {Path(r["source"]).name: r for r in map(json.loads, records.read_text().splitlines())}
    assert "more than the cap" in rows["bomb.jpg"]["error"] and rows["good.png"]["error"] is None
    assert "Traceback" not in capsys.readouterr().err


def test_an_image_smaller_than_a_tile_is_named_by_calibration(tiled_model, tmp_path, capsys):
    """One 20x33 image aborted a whole calibration without naming it."""
    import cv2

    from rd_edge.cli.calibrate import main as rd_calibrate

    good, defect = tmp_path / "good", tmp_path / "defect"
    good.mkdir()
    defect.mkdir()
    cv2.imwrite(str(good / "000_small.png"), good_frame(9, hw=(20, 33)))  # held out as a good test image
    for i in range(1, 6):
        cv2.imwrite(str(good / f"{i:03d}.png"), good_frame(i, hw=(96, 96)))
    for i in range(2):
        cv2.imwrite(str(defect / f"{i:03d}.png"), good_frame(10 + i, hw=(96, 96)))
    assert (
        rd_calibrate([str(tiled_model["onnx"]), "--good", str(good), "--defect", str(defect), "--quiet"]) == 1
    )
    err = capsys.readouterr().err
    assert (
        err.startswith("error: cannot calibrate on ")
        and "000_small.png (33x20)" in err
        and "Traceback" not in err
    )
