"""scripts/gpu_check.sh without a GPU: the Jetson path (a fake /etc/nv_tegra_release) on a
runtime-only install (no torch, onnx or ONNX Runtime) skips with reasons and exits 0."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run_check(python, tmp_path, tegra_release=None, model=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RD_EDGE_")}
    env.update(
        PY=str(python),
        PYTHONPATH=str(ROOT),
        GPU_CHECK_BUDGET_S="200",
        PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin",
    )  # no nvidia-smi on this PATH
    env["RD_EDGE_TEGRA_RELEASE"] = str(tegra_release or tmp_path / "no_tegra_release")
    if model:
        env["RD_EDGE_DEVICE_TREE_MODEL"] = str(model)
    (tmp_path / "bin").mkdir(exist_ok=True)
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def test_without_a_gpu_or_jetson_it_says_so_and_exits_0(tmp_path):
    rc, out = run_check(sys.executable, tmp_path)
    assert rc == 0, out
    assert "no NVIDIA GPU here: nvidia-smi is not installed and" in out and "nothing to check" in out
    assert "== pytest" not in out


def _runtime_only_python(root: Path) -> Path:
    """A venv like a JetPack runtime install: numpy and OpenCV (Debian's, when /usr/bin/python3
    has them, as JetPack's apt packages do), pytest; no torch, onnx or onnxruntime."""
    probe = "import cv2, numpy, importlib.util as u; assert u.find_spec('torch') is None"
    system = shutil.which("python3", path="/usr/bin")
    use_system = system and subprocess.run([system, "-c", probe], capture_output=True).returncode == 0
    base = system if use_system else sys.executable
    venv = root / "runtime_only"
    subprocess.run(
        [base, "-m", "venv"] + (["--system-site-packages"] if use_system else []) + [str(venv)],
        check=True,
        timeout=120,
    )
    packages = ["pytest"] + ([] if use_system else ["numpy", "opencv-python-headless"])
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *packages],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if pip.returncode != 0:
        pytest.skip(f"cannot install {packages} into a fresh venv: {pip.stderr.strip().splitlines()[-1:]}")
    return venv / "bin" / "python"


@pytest.mark.slow
def test_jetson_runtime_only_install_takes_the_jetson_path_and_skips_with_reasons(tmp_path):
    python = _runtime_only_python(tmp_path)
    check = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; "
            "print([m for m in ('torch', 'onnx', 'onnxruntime') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == "[]", check.stdout + check.stderr
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n")
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    rc, out = run_check(python, tmp_path, release, model)
    assert rc == 0, out
    assert "no NVIDIA GPU here" not in out
    assert (
        "Jetson: # R35 (release), REVISION: 4.1" in out
        and "board: NVIDIA Jetson Orin Nano Developer Kit" in out
    )
    assert "torch        not installed" in out
    summary = out[out.index("== summary") :]
    # Every step that needs torch/onnx/onnxruntime is listed with its reason, nothing failed.
    assert "FAILED" not in summary and "ERROR" not in out
    assert "test_tensorrt.py:0: needs onnx, not installed (runtime-only install)" in summary
    assert "test_train.py:0: needs torch, not installed" in summary
    assert "every backend on one model: torch, onnx, onnxruntime not installed" in summary
    assert "latency table: torch is not installed" in summary
    assert "test_cuda_preprocess.py" in summary and "pycuda is not installed" in summary
    assert "all GPU checks that could run passed" in summary
