"""The floor plan of ARCHITECTURE.md holds: import-linter's contracts pass here and catch a wrong import."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

needs_linter = pytest.mark.skipif(
    not LINT.exists(), reason="import-linter is not installed (pip install -e .[dev])"
)


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the tree at ``root`` (its rd_edge, export and benchmarks come first on the path)."""
    env = {"PYTHONPATH": f"{root}:{root / 'benchmarks'}", "PATH": "/usr/bin:/bin", "HOME": str(root)}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


@needs_linter
def test_the_layer_contracts_are_kept():
    done = lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@needs_linter
@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("rd_edge/core/files.py", "import torch", "rd_edge.core is not allowed to import torch"),
        (
            "rd_edge/core/metadata.py",
            "from rd_edge.runtime import Detector",
            "rd_edge.core is not allowed to import rd_edge.runtime",
        ),
        (
            "rd_edge/runtime/sources.py",
            "from rd_edge.data import synthetic",
            "rd_edge.runtime is not allowed to import rd_edge.data",
        ),
        (
            "export/verify.py",
            "from rd_edge.runtime.detector import Detector",
            "rd_export is not allowed to import rd_edge.runtime.detector",
        ),
        (
            "benchmarks/rdbench/stream.py",
            "from rd_edge.runtime.sources import open_source",
            "rdbench is not allowed to import rd_edge.runtime.sources",
        ),
        (
            "rd_edge/model/rd.py",
            "import rd_edge.train",
            "rd_edge.model is not allowed to import rd_edge.train",
        ),
        ("rd_edge/train.py", "import rdbench.plan", "rd_edge.train is not allowed to import rdbench"),
        ("export/cli.py", "import rd_edge.cli.main", "rd_export is not allowed to import rd_edge.cli"),
    ],
)
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
    found |= {
        "rd_export." + ".".join(p.parent.relative_to(REPO / "export").parts)
        if p.parent != REPO / "export"
        else "rd_export"
        for p in (REPO / "export").rglob("__init__.py")
    }
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_test_file_names_are_unique():
    """The test folders are not packages: two test files of one name stop pytest's collection."""
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def _imports_and_path_edits(path: Path):
    """(modules imported, sys.path entries added) by one script, from its syntax tree."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules, paths = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.path.insert", "sys.path.append"):
            paths.append(ast.unparse(node))
    return modules, paths


def test_scripts_and_benchmarks_import_nothing_from_the_tests():
    """tests/ is not an API: scripts and benchmarks use the SDK's public modules (the rdbench
    package is checked by the import-linter contracts; the scripts around it are checked here)."""
    test_helpers = {p.stem for p in (REPO / "tests").rglob("*.py") if not p.name.startswith("test_")}
    offenders = []
    for script in sorted((REPO / "scripts").rglob("*.py")) + sorted((REPO / "benchmarks").rglob("*.py")):
        modules, paths = _imports_and_path_edits(script)
        helpers = sorted(m for m in modules if m.split(".")[0] in test_helpers | {"tests"})
        into_tests = [p for p in paths if "tests" in p]
        if helpers or into_tests:
            offenders.append(f"{script.relative_to(REPO)}: {helpers + into_tests}")
    assert offenders == []


def test_benchmark_scripts_use_the_runtime_through_its_namespace():
    internal = []
    for script in sorted((REPO / "benchmarks").glob("*.py")):
        modules, _ = _imports_and_path_edits(script)
        internal += [f"{script.name}: {m}" for m in sorted(modules) if m.startswith("rd_edge.runtime.")]
    assert internal == []
