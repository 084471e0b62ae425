"""rd-calibrate on a checkpoint: thresholds go into model.pt too, so later exports carry them."""
import shutil

import pytest

from rd_edge.checkpoint import read_checkpoint
from rd_edge.cli.calibrate import main as calibrate_main
from rd_edge.core.files import sha256_file
from rd_edge.core.thresholds import Thresholds, thresholds_path


def test_calibrating_a_checkpoint_writes_it_and_the_export_carries_it(r18_checkpoint, demo_category, tmp_path):
    pytest.importorskip("onnx")
    from rd_export.onnx_export import export_onnx

    model = tmp_path / "m.pt"
    shutil.copy(r18_checkpoint, model)
    assert calibrate_main([str(model), "--data", str(demo_category), "--method", "zero-escape", "--quiet"]) == 0
    saved = Thresholds.read(thresholds_path(model))
    data = read_checkpoint(model)
    assert data["threshold"] == saved.image_threshold and data["pixel_threshold"] == saved.pixel_threshold
    assert data["calibration"]["escapes"] == 0
    assert saved.checkpoint_sha256 == sha256_file(model)  # what an export of it will record
    report = export_onnx(model, tmp_path / "m.onnx", verify=False)
    assert report.metadata.threshold == saved.image_threshold
    assert report.metadata.pixel_threshold == saved.pixel_threshold
    assert report.metadata.checkpoint_sha256 == saved.checkpoint_sha256
