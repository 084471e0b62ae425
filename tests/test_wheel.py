"""Installing from a built wheel works like installing from the checkout: the wheel holds every
package of the tree (pyproject lists them by hand) and the station's static files."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_every_package_and_data_file(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("rd_edge-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "rd_edge", "export"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    expected = {("rd_export" + f[len("export") :]) if f.startswith("export/") else f for f in tracked}
    missing = sorted(expected - inside)
    assert not missing, (
        f"files of the tree missing from the wheel (add their package to pyproject.toml): {missing}"
    )
