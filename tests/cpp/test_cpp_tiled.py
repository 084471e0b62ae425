"""The C++ example on a tiled model: same grid, window and stitching as the Python runtime."""

from __future__ import annotations

import numpy as np
import pytest
from test_cpp_example import REL_TOL, _parse_lines, _run, _tail, _with_metadata, rd_infer  # noqa: F401

pytestmark = pytest.mark.cpp


@pytest.mark.parametrize("frame", ["any", [120, 160]])
def test_tiled_scores_match_python_runtime(rd_infer, r18_onnx, tmp_path, frame):  # noqa: F811
    cv2 = pytest.importorskip("cv2")
    from rd_edge.data.synthetic import render_demo_image
    from rd_edge.runtime import Detector

    tiling = {"tile": [64, 64], "overlap": 0.25, "frame": frame, "window": "cosine"}
    model = _with_metadata(r18_onnx, tmp_path / "tiled.onnx", lambda m: dict(m, tiling=tiling))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, (h, w) in enumerate([(150, 200), (64, 300), (200, 150)]):
        image = render_demo_image(
            "dots", "hole" if i == 1 else "good", max(h, w), np.random.default_rng(i)
        ).image
        assert cv2.imwrite(str(folder / f"{i}.png"), image[:h, :w])

    proc = _run([rd_infer["exe"], model, folder])
    assert proc.returncode == 0, _tail(proc)
    assert (
        f"tiled model: tiles 64x64, overlap 0.25, frame {'any' if frame == 'any' else '160x120'}"
        in proc.stderr
    )
    records = _parse_lines(proc.stdout)
    assert len(records) == 3
    with Detector(model, backend="ort") as det:
        assert det.metadata.tile_spec() is not None
        for record in records:
            pred = det.predict(cv2.imread(record["path"]))
            rel = abs(record["score"] - pred.score) / max(abs(pred.score), 1e-12)
            assert rel <= REL_TOL, f"{record['path']}: C++ {record['score']} vs Python {pred.score}"
            assert record["anomalous"] == int(pred.is_anomalous)


def test_frame_smaller_than_a_tile_is_reported_and_skipped(rd_infer, r18_onnx, tmp_path):  # noqa: F811
    cv2 = pytest.importorskip("cv2")
    model = _with_metadata(
        r18_onnx,
        tmp_path / "tiled.onnx",
        lambda m: dict(m, tiling={"tile": [64, 64], "overlap": 0.25, "frame": "any"}),
    )
    small = tmp_path / "small.png"
    assert cv2.imwrite(str(small), np.zeros((40, 100, 3), np.uint8))
    proc = _run([rd_infer["exe"], model, small])
    assert proc.returncode != 0 and "smaller than the model's tile of 64 px" in proc.stderr, _tail(proc)


def test_tiled_grid_with_half_pixel_overlap_matches_python(rd_infer, r18_onnx, tmp_path):  # noqa: F811
    """Overlap 15.5 px of a 64 px tile (issue 28: halves in rounding): both round it up to 16, so a
    161 px side has 4 tiles (stride 48: ceil(97 / 48) + 1), not 3 (stride 49); the scores agree."""
    cv2 = pytest.importorskip("cv2")
    from rd_edge.core.tiling import tile_starts
    from rd_edge.runtime import Detector

    overlap = 15.5 / 64
    assert tile_starts(161, 64, overlap) == [0, 32, 64, 97]
    tiling = {"tile": [64, 64], "overlap": overlap, "frame": "any", "window": "cosine"}
    model = _with_metadata(r18_onnx, tmp_path / "tiled.onnx", lambda m: dict(m, tiling=tiling))
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(28)
    image = np.full((161, 161, 3), 128, np.uint8)
    image[120:140, 130:150] = rng.integers(
        0, 256, (20, 20, 3), dtype=np.uint8
    )  # a defect the tile rows see differently
    assert cv2.imwrite(str(folder / "0.png"), image)
    proc = _run([rd_infer["exe"], model, folder])
    assert proc.returncode == 0, _tail(proc)
    (record,) = _parse_lines(proc.stdout)
    with Detector(model, backend="ort") as det:
        pred = det.predict(image)
    assert abs(record["score"] - pred.score) / max(abs(pred.score), 1e-12) <= REL_TOL, (
        record["score"],
        pred.score,
    )


@pytest.mark.parametrize("overlap", [1.0, -0.25])
def test_an_overlap_outside_0_to_1_is_refused_as_in_python(rd_infer, r18_onnx, tmp_path, overlap):  # noqa: F811
    from rd_edge.core.errors import MetadataError
    from rd_edge.core.tiling import Tiling

    with pytest.raises(MetadataError, match="overlap"):
        Tiling.from_dict({"tile": [64, 64], "overlap": overlap})
    model = _with_metadata(
        r18_onnx,
        tmp_path / "tiled.onnx",
        lambda m: dict(m, tiling={"tile": [64, 64], "overlap": overlap, "frame": "any"}),
    )
    proc = _run([rd_infer["exe"], model, tmp_path])
    assert proc.returncode == 1 and "overlap" in proc.stderr, _tail(proc)
