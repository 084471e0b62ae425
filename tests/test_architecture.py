"""The floor plan of ARCHITECTURE.md holds: import-linter's contracts pass here and catch a wrong import."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

needs_linter = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e .[dev])")


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the tree at ``root`` (its rd_edge, export and benchmarks come first on the path)."""
    env = {"PYTHONPATH": f"{root}:{root / 'benchmarks'}", "PATH": "/usr/bin:/bin", "HOME": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


@needs_linter
def test_the_layer_contracts_are_kept():
    done = lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@needs_linter
@pytest.mark.parametrize("module, line, broken", [
    ("rd_edge/core/files.py", "import torch", "rd_edge.core is not allowed to import torch"),
    ("rd_edge/core/metadata.py", "from rd_edge.runtime import Detector", "rd_edge.core is not allowed to import rd_edge.runtime"),
    ("rd_edge/runtime/sources.py", "from rd_edge.data import synthetic", "rd_edge.runtime is not allowed to import rd_edge.data"),
    ("export/verify.py", "from rd_edge.runtime.detector import Detector", "rd_export is not allowed to import rd_edge.runtime.detector"),
])
def test_a_deliberately_wrong_import_breaks_a_contract(tmp_path, module, line, broken):
    for part in ("rd_edge", "export", "benchmarks"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / "rd_export").symlink_to(tmp_path / "export")  # the package-dir mapping of pyproject
    with open(tmp_path / module, "a") as f:
        f.write(f"\n{line}  # deliberately wrong\n")
    done = lint(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert broken in " ".join(done.stdout.split()), done.stdout


def test_every_package_is_listed_for_installation():
    """pyproject lists packages explicitly: a new sub-package missing there is absent from a wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "rd_edge").rglob("__init__.py")}
    found |= {"rd_export." + ".".join(p.parent.relative_to(REPO / "export").parts) if p.parent != REPO / "export"
              else "rd_export" for p in (REPO / "export").rglob("__init__.py")}
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_test_file_names_are_unique():
    """The test folders are not packages: two test files of one name stop pytest's collection."""
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
