"""Fixtures shared across the suite: everything is generated locally, nothing is downloaded.

Torch-free at import: on a runtime-only install (a Jetson: no torch, onnx or ONNX Runtime),
``RD_EDGE_RUNTIME_ONLY=1`` (set by scripts/gpu_check.sh) turns a test file that fails to
import one of those packages into a skip that names it, instead of a collection error.
"""

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py, fake_cuda.py, kernel_harness.py
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))  # rdbench (e.g. rdbench.browser)

# What a runtime-only install lacks on purpose (docs/jetson.md).
RUNTIME_ONLY_MISSING = {"torch", "torchvision", "onnx", "onnxruntime", "onnxscript", "sklearn", "tqdm"}


@pytest.fixture(autouse=True, scope="session")
def _no_teacher_downloads(tmp_path_factory):
    """Nothing downloads: the ImageNet teacher's base URL is a closed local port and torch's hub
    cache an empty folder, so a test that trains without teacher weights 'none' fails at once
    (with the one-line download error) instead of reaching for the internet."""
    patch = pytest.MonkeyPatch()
    patch.setenv("RD_EDGE_WEIGHTS_URL", "http://127.0.0.1:9/models")
    patch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    yield
    patch.undo()


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if not (report.failed and os.environ.get("RD_EDGE_RUNTIME_ONLY") == "1"):
        return
    missing = re.search(r"No module named '([\w.]+)'", str(report.longrepr))
    if missing and missing.group(1).split(".")[0] in RUNTIME_ONLY_MISSING:
        report.outcome = "skipped"
        report.longrepr = (
            str(collector.path),
            0,
            f"Skipped: needs {missing.group(1)}, not installed (runtime-only install)",
        )


@pytest.fixture(scope="session")
def demo_category(tmp_path_factory) -> Path:
    """A small demo category at 64 px: 16 good training images, a few test images per defect."""
    from rd_edge.data import write_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    (folder,) = write_demo_dataset(
        root, categories=["weave"], image_size=64, n_train=16, n_test_good=4, n_test_per_defect=2, seed=0
    )
    return folder


@pytest.fixture(scope="session")
def r18_checkpoint(tmp_path_factory, demo_category) -> Path:
    """Random-weight resnet18 checkpoint at 64 px that knows its training data folder."""
    from helpers import make_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "r18.pt"
    return make_checkpoint(path, "resnet18", 64, data_dir=str(demo_category))


@pytest.fixture(scope="session")
def r18_onnx(tmp_path_factory, r18_checkpoint) -> Path:
    """The fused fp32 graph of r18_checkpoint (exported and verified once per session)."""
    pytest.importorskip("onnx")
    from rd_export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "r18.onnx"
    export_onnx(r18_checkpoint, out)
    return out
