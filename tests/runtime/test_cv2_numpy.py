"""A numpy that OpenCV was not built for: rd-infer says what to do in one line.

The Jetson failure (issue 27): pip put numpy 2 into a --system-site-packages venv and JetPack's
OpenCV, built for numpy 1.x, stopped importing. Reproduced here with Debian's own cv2 module
(python3-opencv, built for Debian's numpy 1.24) in front of this venv's numpy 2.
"""

import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_CV2 = Path("/usr/lib/python3/dist-packages") / f"cv2{sysconfig.get_config_var('EXT_SUFFIX')}"


@pytest.fixture
def system_cv2_first(tmp_path) -> Path:
    """A folder with only the distribution's cv2, to put before this venv's packages."""
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip(f"needs numpy 2 in this venv, found {np.__version__}")
    if not SYSTEM_CV2.exists():
        pytest.skip(f"needs Debian's python3-opencv for this Python ({SYSTEM_CV2} missing)")
    (tmp_path / SYSTEM_CV2.name).symlink_to(SYSTEM_CV2)
    return tmp_path


def test_rd_infer_names_the_numpy_mismatch_in_one_line(system_cv2_first, tmp_path):
    env = {"PYTHONPATH": f"{system_cv2_first}:{ROOT}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from rd_edge.runtime.cli import main; main()",
            str(tmp_path / "model.onnx"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 1
    assert one_line_error(proc.stderr), proc.stderr
    assert str(SYSTEM_CV2.name) in proc.stderr and f"numpy {np.__version__}" in proc.stderr
    assert "pip uninstall numpy" in proc.stderr and 'pip install "numpy<2"' in proc.stderr


def test_the_detector_api_gets_a_typed_import_error(system_cv2_first):
    code = (
        "from rd_edge.core.errors import OpenCVNumpyError\n"
        "try:\n    from rd_edge.runtime import Detector\n"
        "except OpenCVNumpyError as exc:\n    assert isinstance(exc, ImportError); print('typed')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PYTHONPATH": f"{system_cv2_first}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout.strip() == "typed", proc.stderr
    assert proc.stderr == ""  # numpy's page of warnings is held back
