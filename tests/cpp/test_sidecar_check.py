"""The C++ TensorRT backend's sidecar check equals the Python runtime's (name, capability, SM
count, board), on one sidecar file written by the Python writer.

tests/cpp/fixtures/orin_agx.engine.json is what rd_edge.core.sidecar.EngineSidecar.write writes
for an AGX Orin plan: the first test rewrites it with the current writer and must get the same
bytes, so a change of the format shows here and the C++ reader is checked against it again.
rd_sidecar_check (cpp_examples/src/sidecar_check.cpp, no TensorRT needed) runs the C++ rule.
Set RD_EDGE_WRITE_FIXTURES=1 to rewrite the fixture after a deliberate format change.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rd_edge.core.errors import BackendError
from rd_edge.core.metadata import ModelMetadata
from rd_edge.core.sidecar import EngineSidecar, GpuInfo, check_compatible

ROOT = Path(__file__).resolve().parents[2]
CPP_DIR = ROOT / "cpp_examples"
BUILD_DIR = CPP_DIR / "build" / "pytest"  # shared with test_cpp_example.py
FIXTURE = Path(__file__).parent / "fixtures" / "orin_agx.engine"  # the sidecar is <plan>.json

AGX = GpuInfo("Orin", "8.7", 16, 62841, "NVIDIA Jetson AGX Orin Developer Kit")


def fixture_sidecar() -> EngineSidecar:
    meta = ModelMetadata(
        backbone="resnet18",
        image_size=[256, 256],
        threshold=0.31,
        score_stats={"min": 0.1, "max": 0.3, "mean": 0.2, "std": 0.05, "count": 20},
        checkpoint_sha256="ab" * 32,
        exporter_version="0.1.0",
        precision="fp16",
        resize="area-shrink/linear-enlarge",
    )
    return EngineSidecar(
        "10.3.0",
        AGX.name,
        AGX.compute_capability,
        "fp16",
        1,
        8,
        "cd" * 32,
        meta,
        AGX.sm_count,
        AGX.total_memory_mb,
        AGX.device_model,
        opt_batch=4,
        dynamic_batch=True,
    )


# running GPU -> what both sides must decide (None: compatible)
CASES = [
    (AGX, None),
    (AGX._replace(total_memory_mb=30000), None),  # memory is recorded, never compared
    (
        GpuInfo("Orin", "8.7", 8, 7620, "NVIDIA Jetson Orin Nano Developer Kit"),
        "8 SMs",
    ),  # Python refused, C++ did not
    (GpuInfo("Orin", "8.7", 16, 62841, "NVIDIA Jetson AGX Orin 64GB"), "AGX Orin 64GB"),  # another board
    (
        GpuInfo("Orin", "8.7", 16, 62841, None),
        "running Orin compute 8.7 (16 SMs",
    ),  # no board here: not a Jetson
    (GpuInfo("NVIDIA A2", "8.6", 10, 15000, None), "NVIDIA A2 compute 8.6"),
    (AGX._replace(sm_count=AGX.sm_count - 2), f"{AGX.sm_count - 2} SMs"),  # only the SM count differs
]


def test_fixture_is_what_the_python_writer_writes(tmp_path):
    written = fixture_sidecar().write(tmp_path / "orin_agx.engine")
    if os.environ.get("RD_EDGE_WRITE_FIXTURES"):
        shutil.copyfile(written, FIXTURE.with_name(FIXTURE.name + ".json"))
    assert written.read_text() == FIXTURE.with_name(FIXTURE.name + ".json").read_text(), (
        "the sidecar format changed: check cpp_examples/src/metadata.cpp reads it, then rewrite the "
        "fixture with RD_EDGE_WRITE_FIXTURES=1"
    )
    assert EngineSidecar.read(FIXTURE) == fixture_sidecar()


def python_verdict(gpu: GpuInfo):
    try:
        check_compatible(EngineSidecar.read(FIXTURE), FIXTURE, "10.3.0", gpu)
    except BackendError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def sidecar_check() -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found (apt-get install cmake)")
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler (apt-get install g++)")
    configure = subprocess.run(
        [cmake, "-S", CPP_DIR, "-B", BUILD_DIR, "-DCMAKE_BUILD_TYPE=Release", "-DRD_WERROR=ON"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if configure.returncode != 0:
        if "OpenCV" in configure.stdout + configure.stderr:
            pytest.skip("OpenCV development files not found (apt-get install libopencv-dev)")
        pytest.fail(f"cmake configure failed:\n{configure.stdout[-2000:]}{configure.stderr[-2000:]}")
    build = subprocess.run(
        [cmake, "--build", BUILD_DIR, "--target", "rd_sidecar_check", "-j2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, (
        f"building rd_sidecar_check failed:\n{build.stdout[-3000:]}{build.stderr[-2000:]}"
    )
    return BUILD_DIR / "rd_sidecar_check"


@pytest.mark.cpp
@pytest.mark.parametrize(
    "gpu, refused_for", CASES, ids=["same", "memory", "nano", "board", "no-board", "a2", "sms"]
)
def test_cpp_decides_as_python_on_the_same_sidecar(sidecar_check, gpu, refused_for):
    args = [str(sidecar_check), str(FIXTURE), gpu.name, gpu.compute_capability, str(gpu.sm_count)]
    proc = subprocess.run(
        args + ([gpu.device_model] if gpu.device_model else []), capture_output=True, text=True, timeout=30
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == f"built for: {AGX.describe()}", proc.stdout + proc.stderr  # every field read back
    python = python_verdict(gpu._replace(total_memory_mb=None))  # the C++ tool is given no memory size
    if refused_for is None:
        assert python is None and (proc.returncode, lines[1]) == (0, "compatible")
        return
    assert proc.returncode == 3 and lines[1].startswith("incompatible: GPU "), proc.stdout
    cpp_reason = lines[1][len("incompatible: ") :]
    assert refused_for in cpp_reason and python is not None and cpp_reason in python  # the same words


@pytest.mark.cpp
def test_cpp_reads_an_old_sidecar_as_python_does(sidecar_check, tmp_path):
    """A sidecar from before SMs and boards were recorded: accepted on a discrete GPU by name,
    refused on a Jetson (it cannot say which Orin built it), on both sides."""
    old = fixture_sidecar()
    old.sm_count = old.total_memory_mb = old.device_model = None
    plan = tmp_path / "old.engine"
    old.write(plan)
    for gpu, ok in (
        (GpuInfo("Orin", "8.7", 8, None, None), True),
        (GpuInfo("Orin", "8.7", 8, None, AGX.device_model), False),
    ):
        proc = subprocess.run(
            [str(sidecar_check), str(plan), gpu.name, gpu.compute_capability, str(gpu.sm_count)]
            + ([gpu.device_model] if gpu.device_model else []),
            capture_output=True,
            text=True,
            timeout=30,
        )
        try:
            check_compatible(EngineSidecar.read(plan), plan, "10.3.0", gpu)
            python_ok = True
        except BackendError as exc:
            python_ok = False
            assert (
                "from before boards were recorded" in str(exc)
                and "from before boards were recorded" in proc.stdout
            )
        assert python_ok == ok and (proc.returncode == 0) == ok, proc.stdout
