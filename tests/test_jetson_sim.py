"""docs/jetson.md and `make jetson-sim` say the same; the runtime's Python floor holds and bites.

The job itself (arm64 under qemu, minutes) is `make jetson-sim`, its own CI step; these checks are
what keeps it honest in `make test`: the install commands it runs are the documented ones, and
the floor check fails on a line newer than Python 3.8.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICE_SH = ROOT / "scripts" / "jetson_sim" / "device.sh"
# Lines of the docs' install block that only a Jetson has (JetPack, its CUDA toolkit).
JETPACK_ONLY = ("sudo apt install nvidia-jetpack", "export PATH=/usr/local/cuda/bin")


def _docs_install_commands():
    text = (ROOT / "docs" / "jetson.md").read_text()
    section = text.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    # The block run on the device (the one before it copies the code and model over).
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", section, re.DOTALL) if "python3 -m venv" in b]
    commands = []
    for line in block.splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command and not line.startswith(" ") and not command.startswith(JETPACK_ONLY):
            commands.append(command)
    return commands


def _device_commands():
    """The commands device.sh marks as documented, in order: verbatim ones (``CMD  # docs/jetson.md``)
    and the one it can only paraphrase (``# docs/jetson.md: CMD -- why``)."""
    commands = []
    for line in DEVICE_SH.read_text().splitlines():
        verbatim = re.match(r"\s*(.*?)\s+# docs/jetson\.md$", line)
        paraphrased = re.match(r"\s*# docs/jetson\.md: (.*?) -- ", line)
        if verbatim:
            commands.append(verbatim.group(1))
        elif paraphrased:
            commands.append(paraphrased.group(1))
    return commands


def test_the_job_runs_the_documented_install_step_for_step():
    docs = _docs_install_commands()
    assert docs == _device_commands(), (
        "docs/jetson.md's install block and scripts/jetson_sim/device.sh differ"
    )
    assert 'pip install ".[jetson]"' in docs


def test_the_jetson_extra_keeps_numpy_1x_above_the_runtime_floor():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.8"
    (floor,) = [d for d in project["dependencies"] if d.startswith("numpy")]
    assert floor == "numpy>=1.19"
    assert "numpy>=1.19,<2" in project["optional-dependencies"]["jetson"]


def _vermin(tmp_path, extra_line=None):
    """`make python-floor`'s command over a copy of core and runtime (plus one line, if given)."""
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent))
    if vermin is None:
        pytest.skip("vermin not installed (the dev extra has it)")
    recipe = subprocess.run(
        ["make", "-n", "-s", "python-floor", "VENV=" + str(Path(sys.executable).parents[1])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    args = recipe.replace("\\\n", " ").split("vermin", 1)[1].split()
    for package in ("core", "runtime"):
        shutil.copytree(ROOT / "rd_edge" / package, tmp_path / "rd_edge" / package)
    if extra_line:
        (tmp_path / "rd_edge" / "runtime" / "newer.py").write_text(extra_line + "\n")
    return subprocess.run(
        [vermin] + args, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60
    )


def test_the_runtime_passes_the_python_38_floor(tmp_path):
    proc = _vermin(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "line",
    [
        "def first(x):\n    match x:\n        case [a, *_]:\n            return a",  # 3.10 syntax
        "pairs = list(zip([1], [2], strict=True))",  # 3.10 standard library
        "import functools\n@functools.cache\ndef f():\n    return 1",  # 3.9 standard library
    ],
)
def test_a_line_newer_than_python_38_in_the_runtime_fails_the_floor(tmp_path, line):
    proc = _vermin(tmp_path, line)
    assert proc.returncode != 0 and "newer.py" in proc.stdout, proc.stdout + proc.stderr
