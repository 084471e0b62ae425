"""rd-calibrate on a checkpoint: thresholds go into model.pt too, so later exports carry them."""

import shutil

import pytest

from rd_edge.checkpoint import read_checkpoint
from rd_edge.cli.calibrate import main as calibrate_main
from rd_edge.core.files import sha256_file
from rd_edge.core.thresholds import Thresholds, thresholds_path


def test_calibrating_a_checkpoint_writes_it_and_the_export_carries_it(
    r18_checkpoint, demo_category, tmp_path
):
    pytest.importorskip("onnx")
    from rd_export.onnx_export import export_onnx

    model = tmp_path / "m.pt"
    shutil.copy(r18_checkpoint, model)
    assert (
        calibrate_main([str(model), "--data", str(demo_category), "--method", "zero-escape", "--quiet"]) == 0
    )
    saved = Thresholds.read(thresholds_path(model))
    data = read_checkpoint(model)
    assert data["threshold"] == saved.image_threshold and data["pixel_threshold"] == saved.pixel_threshold
    assert data["calibration"]["escapes"] == 0
    assert saved.checkpoint_sha256 == sha256_file(model)  # what an export of it will record
    report = export_onnx(model, tmp_path / "m.onnx", verify=False)
    assert report.metadata.threshold == saved.image_threshold
    assert report.metadata.pixel_threshold == saved.pixel_threshold
    assert report.metadata.checkpoint_sha256 == saved.checkpoint_sha256
    # the metadata says rd-calibrate chose it (rd-infer's header), not rd-train's held-out images
    from rd_edge.core.thresholds import CALIBRATION_KEY, metadata_threshold_basis

    meta = report.metadata
    assert meta.extra[CALIBRATION_KEY] == {
        "method": "zero-escape",
        "n_good": saved.report["n_good"],
        "n_defective": saved.report["n_defective"],
    }
    basis = metadata_threshold_basis(meta.threshold, meta.score_stats, meta.extra)
    assert basis.startswith("rd-calibrate zero-escape on ") and "held-out" not in basis


def test_rd_eval_takes_only_thresholds_calibrated_for_these_weights(tmp_path):
    """Beside model.pt: an export's thresholds of *other* weights (another sha256) are ignored, one
    of these weights is taken, an unsigned MODEL.pt.thresholds.json counts as its own."""
    from types import SimpleNamespace

    from rd_edge.core.files import sha256_file
    from rd_edge.core.thresholds import Thresholds, thresholds_path
    from rd_edge.evaluate import checkpoint_thresholds

    pt = tmp_path / "model.pt"
    pt.write_bytes(b"weights")
    model = SimpleNamespace(threshold=0.9, pixel_threshold=0.8)
    Thresholds(0.1, 0.05, checkpoint_sha256="f" * 64).write(tmp_path / "other.onnx.thresholds.json")
    assert checkpoint_thresholds(pt, model) == (0.9, 0.8, "checkpoint")
    Thresholds(0.3, 0.2, checkpoint_sha256=sha256_file(pt)).write(tmp_path / "model.onnx.thresholds.json")
    assert checkpoint_thresholds(pt, model) == (0.3, 0.2, str(tmp_path / "model.onnx.thresholds.json"))
    Thresholds(0.4, None).write(thresholds_path(pt))
    assert checkpoint_thresholds(pt, model) == (0.4, None, str(thresholds_path(pt)))
