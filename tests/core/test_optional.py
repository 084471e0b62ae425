"""Optional packages (rd_edge.core.optional): declared at the top of a module, imported on first
use, once; a missing one is the error type the caller asked for, naming what installs it; a
command line turns it into one line."""

import importlib
import sys
from types import SimpleNamespace

import pytest

from rd_edge.core.cli import run_cli
from rd_edge.core.errors import BackendError, ConfigError, ExportError, ImageReadError
from rd_edge.core.optional import (
    LazyModule,
    import_cv2,
    import_optional,
    is_jetson,
    lazy_import,
    opencv_install_hint,
)

MISSING = "rd_edge_test_no_such_package"
HINT = "`pip install '.[openvino]'`"
PIP_OPENCV = "pip install opencv-python-headless"


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """An importable module that logs each time it is imported (executed)."""
    name = f"rd_edge_probe_{tmp_path.name.replace('-', '_')}"
    log = tmp_path / "imports.log"
    (tmp_path / f"{name}.py").write_text(
        f"with open({str(log)!r}, 'a') as f:\n    f.write('x')\nVALUE = 42\n\ndef double(x):\n    return 2 * x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield SimpleNamespace(name=name, imports=lambda: len(log.read_text()) if log.exists() else 0)
    sys.modules.pop(name, None)


@pytest.fixture
def not_jetson(tmp_path, monkeypatch):
    monkeypatch.setenv("RD_EDGE_TEGRA_RELEASE", str(tmp_path / "no_nv_tegra_release"))


@pytest.fixture
def jetson(tmp_path, monkeypatch):
    marker = tmp_path / "nv_tegra_release"
    marker.write_text("# R36 (release), REVISION: 4.0\n")
    monkeypatch.setenv("RD_EDGE_TEGRA_RELEASE", str(marker))


def test_declaring_imports_nothing_and_first_use_imports_once(probe):
    mod = lazy_import(probe.name, "a test", "pip install probe")
    assert isinstance(mod, LazyModule) and mod.name == probe.name
    assert probe.name not in sys.modules and probe.imports() == 0
    assert mod.VALUE == 42 and mod.double(21) == 42
    assert mod.load() is sys.modules[probe.name]
    assert mod.VALUE == 42
    assert probe.imports() == 1


def test_installed_and_why_missing_do_not_import(probe):
    present = lazy_import(probe.name, "a test", "pip install probe")
    assert present.installed() and present.why_missing() is None
    assert probe.name not in sys.modules and probe.imports() == 0

    missing = lazy_import(MISSING, "the OpenVINO backend", HINT)
    assert not missing.installed()
    assert missing.why_missing() == f"{MISSING} is not installed: {HINT}"
    # a submodule of a missing package: not installed, not an exception
    sub = lazy_import(f"{MISSING}.http", "talking to a Triton server", "pip install tritonclient")
    assert (
        not sub.installed()
        and sub.why_missing() == f"{MISSING}.http is not installed: pip install tritonclient"
    )


@pytest.mark.parametrize("error", [None, BackendError, ExportError, ConfigError])
def test_a_missing_package_is_the_error_asked_for_naming_the_install(error):
    declared = lazy_import(MISSING, "the OpenVINO backend", HINT, **({"error": error} if error else {}))
    with pytest.raises(Exception) as info:
        declared.Core  # noqa: B018  (first use imports)
    assert type(info.value) is (error or BackendError)  # BackendError unless told otherwise
    assert str(info.value) == (
        f"the OpenVINO backend needs the {MISSING} Python package, which is not installed here: "
        f"{HINT} (No module named '{MISSING}')"
    )
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_a_caller_in_another_layer_chooses_the_error_and_the_purpose():
    """rd-export loads the runtime's TensorRT declaration as an ExportError about building."""
    trt = lazy_import(MISSING, "the TensorRT backend", "JetPack, or pip install '.[gpu-cu12]'")
    with pytest.raises(ExportError) as info:
        trt.load(error=ExportError, needed_for="building a TensorRT engine")
    assert str(info.value).startswith(f"building a TensorRT engine needs the {MISSING} Python package")
    assert "JetPack, or pip install '.[gpu-cu12]'" in str(info.value)
    with pytest.raises(BackendError, match="^the TensorRT backend needs"):  # the declaration is unchanged
        trt.load()


def test_installed_but_broken_is_told_apart_from_missing(tmp_path, monkeypatch):
    name = "rd_edge_test_broken_package"
    (tmp_path / f"{name}.py").write_text(
        "raise ImportError('libnvinfer.so.10: cannot open shared object file')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    broken = lazy_import(name, "the TensorRT backend", "JetPack")
    assert broken.installed() and broken.why_missing() is None
    with pytest.raises(BackendError) as info:
        broken.Builder  # noqa: B018
    assert str(info.value) == (
        f"the TensorRT backend needs the {name} Python package; it is installed but failed to "
        f"import: libnvinfer.so.10: cannot open shared object file"
    )
    assert "JetPack" not in str(info.value)  # installing it again would not help
    sys.modules.pop(name, None)


def test_the_module_is_looked_up_each_time_so_a_swapped_one_is_seen(probe, monkeypatch):
    mod = lazy_import(probe.name, "a test", "pip install probe")
    assert mod.VALUE == 42
    monkeypatch.setitem(sys.modules, probe.name, SimpleNamespace(VALUE=7))
    assert mod.VALUE == 7
    monkeypatch.setitem(sys.modules, probe.name, None)  # what tests do to hide a package
    with pytest.raises(
        BackendError, match="a test needs the .* which is not installed here: pip install probe"
    ):
        mod.VALUE  # noqa: B018


def test_import_optional_returns_the_module_now(probe):
    module = import_optional(probe.name, "a test", "pip install probe")
    assert module is sys.modules[probe.name] and module.VALUE == 42 and probe.imports() == 1
    with pytest.raises(ConfigError, match=f"the MQTT sink needs the {MISSING} .* pip install paho-mqtt"):
        import_optional(MISSING, "the MQTT sink", "pip install paho-mqtt", ConfigError)


def test_jetson_is_told_by_its_release_file_and_gets_jetpacks_opencv(jetson):
    assert is_jetson()
    hint = opencv_install_hint()
    assert hint.startswith("sudo apt install python3-opencv") and "--system-site-packages" in hint


def test_elsewhere_opencv_is_the_headless_wheel(not_jetson):
    assert not is_jetson()
    assert opencv_install_hint() == PIP_OPENCV


@pytest.mark.parametrize("platform", ["not_jetson", "jetson"])
def test_a_missing_opencv_is_a_stand_in_whose_first_use_names_the_install(
    platform, request, monkeypatch, capsys
):
    """Commands that read no image still run; those that do end in one line, not a traceback."""
    request.getfixturevalue(platform)
    monkeypatch.setitem(sys.modules, "cv2", None)
    cv2 = import_cv2()
    assert isinstance(cv2, LazyModule) and cv2.name == "cv2"
    with pytest.raises(ImageReadError) as info:
        cv2.imdecode  # noqa: B018
    assert str(info.value).startswith(
        "reading and resizing images needs the cv2 Python package, which is not installed here: "
        + opencv_install_hint()
    )
    assert run_cli(lambda: cv2.imread("x.png")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: reading and resizing images needs the cv2") and err.count("\n") == 1
    assert (PIP_OPENCV in err) == (platform == "not_jetson")
    assert ("sudo apt install python3-opencv" in err) == (platform == "jetson")


def test_an_installed_opencv_is_the_module_itself():
    cv2 = pytest.importorskip("cv2")
    assert import_cv2() is cv2


@pytest.mark.parametrize(
    "name, install",
    [
        ("cv2", PIP_OPENCV),
        ("sklearn.metrics", "pip install scikit-learn"),
        ("tqdm.auto", "pip install tqdm"),
        ("onnxruntime", "pip install onnxruntime"),
    ],
)
def test_a_command_missing_a_package_it_imports_prints_the_install(name, install, not_jetson, capsys):
    def body() -> int:
        raise ModuleNotFoundError(f"No module named '{name}'", name=name)

    assert run_cli(body) == 1
    top = name.partition(".")[0]
    assert capsys.readouterr().err == (
        f"error: this command needs the Python package {top!r}, which is not installed here; "
        f"install it: {install}\n"
    )


def test_a_missing_module_rd_edge_does_not_know_keeps_its_traceback(capsys):
    """A module rd-edge never asked for (a typo, a broken install of its own): a bug, not a setup step."""

    def body() -> int:
        raise ModuleNotFoundError("No module named 'rd_edge.no_such'", name="rd_edge.no_such")

    with pytest.raises(ModuleNotFoundError):
        run_cli(body)
    assert capsys.readouterr().err == ""
