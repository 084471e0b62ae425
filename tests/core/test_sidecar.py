"""The engine sidecar: what a plan was built with, its metadata upgraded like every reader's, and
the "built by this TensorRT for this GPU?" check."""

import json
from pathlib import Path

import pytest

from rd_edge.core.errors import BackendError, MetadataError
from rd_edge.core.metadata import METADATA_FORMAT_VERSION, RESIZE_LINEAR
from rd_edge.core.sidecar import EngineSidecar, GpuInfo, check_compatible, sidecar_path

V1 = Path(__file__).parent / "fixtures" / "metadata_v1.json"
FIELDS = {
    "tensorrt_version": "10.3.0",
    "gpu_name": "Orin",
    "compute_capability": [8, 7],
    "precision": "fp16",
    "min_batch": 1,
    "max_batch": 4,
    "onnx_sha256": "0" * 64,
}


def test_a_sidecar_written_with_version_1_metadata_reads_current(tmp_path):
    plan = tmp_path / "m.engine"
    sidecar_path(plan).write_text(json.dumps({**FIELDS, "rd_edge": json.loads(V1.read_text())}))
    car = EngineSidecar.read(plan)
    assert car.metadata.format_version == METADATA_FORMAT_VERSION and car.metadata.resize == RESIZE_LINEAR
    assert (car.compute_capability, car.max_batch, car.static_batch) == ("8.7", 4, False)
    assert json.loads(car.write(tmp_path / "again.engine").read_text())["rd_edge"]["format_version"] == 2


def test_missing_fields_and_other_gpus_are_refused(tmp_path):
    plan = tmp_path / "m.engine"
    with pytest.raises(MetadataError, match="has no sidecar m.engine.json"):
        EngineSidecar.read(plan)
    sidecar_path(plan).write_text(json.dumps({"gpu_name": "Orin"}))
    with pytest.raises(MetadataError, match="sidecar lacks"):
        EngineSidecar.read(plan)
    sidecar_path(plan).write_text(json.dumps({**FIELDS, "rd_edge": json.loads(V1.read_text())}))
    car = EngineSidecar.read(plan)
    check_compatible(car, plan, "10.3.0", GpuInfo("Orin", "8.7"))
    with pytest.raises(BackendError, match="TensorRT 10.3.0 \\(running 10.4.0\\)"):
        check_compatible(car, plan, "10.4.0", GpuInfo("Orin", "8.7"))
