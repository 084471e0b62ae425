"""benchmarks/latency.py on a tiled model: per-frame latency, tiles/s, batch vs tile by tile."""

from __future__ import annotations

import json

import pytest
from helpers import make_checkpoint

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


def test_tiled_model_reports_batch_and_tile_by_tile_rows(tmp_path):
    from test_latency import _load_latency

    from rd_edge.checkpoint import read_checkpoint, save_checkpoint
    from rd_edge.core.tiling import Tiling

    ckpt = make_checkpoint(tmp_path / "tiled.pt", "resnet18", 64)
    data = read_checkpoint(ckpt)
    data["tiling"] = Tiling((64, 64), 0.25).to_dict()
    save_checkpoint(ckpt, {k: v for k, v in data.items() if k not in ("format", "format_version")})
    out = tmp_path / "tiled.json"
    assert (
        _load_latency().main(
            [
                "--model",
                str(ckpt),
                "--frame",
                "200x150",
                "--iters",
                "2",
                "--warmup",
                "0",
                "--threads",
                "1",
                "--quiet",
                "--json",
                str(out),
                "--markdown",
                str(tmp_path / "t.md"),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())["tiled"]
    assert report["tiles"] == 12 and report["frame"] == [200, 150]  # 4 x 3 tiles of 64
    rows = {r["mode"]: r for r in report["rows"]}
    assert rows["batch"]["runner_calls"] == 1 and rows["tile-by-tile"]["runner_calls"] == 12
    for r in rows.values():
        assert r["p50_ms"] > 0 and r["tiles_per_s"] == pytest.approx(12 / (r["p50_ms"] / 1000))
    assert report["max_abs_map_diff"] < 1e-4  # both modes compute the same map
    assert "tiles/s" in (tmp_path / "t.md").read_text()


def test_tile_count_is_that_of_the_frame_the_model_was_trained_for(tmp_path):
    # A model trained on 96x128 frames sees a 200x150 frame resized to 128x96 first: 2 x 3 tiles.
    from test_latency import _load_latency

    from rd_edge.checkpoint import read_checkpoint, save_checkpoint
    from rd_edge.core.tiling import Tiling

    ckpt = make_checkpoint(tmp_path / "tiled.pt", "resnet18", 64)
    data = read_checkpoint(ckpt)
    data["tiling"] = Tiling((64, 64), 0.25, frame=(96, 128)).to_dict()
    save_checkpoint(ckpt, {k: v for k, v in data.items() if k not in ("format", "format_version")})
    out = tmp_path / "tiled.json"
    assert (
        _load_latency().main(
            [
                "--model",
                str(ckpt),
                "--frame",
                "200x150",
                "--iters",
                "1",
                "--warmup",
                "0",
                "--threads",
                "1",
                "--quiet",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["tiled"]["tiles"] == 6 and "resized to the trained 128x96" in report["markdown"]
