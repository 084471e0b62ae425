"""Optional heavy packages (onnxruntime, tensorrt, pycuda, ...): declared once, imported on first use.

In the spirit of Polygraphy's ``mod.lazy_import``: a module declares at its top

    trt = lazy_import("tensorrt", needed_for="the TensorRT backend", install_hint="JetPack or ...")

and nothing is imported until an attribute of ``trt`` is read. A missing package is then a
typed error naming what installs it, never a bare ImportError traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Type

from .errors import BackendError, OpenCVNumpyError, RdEdgeError


def is_jetson() -> bool:
    """True on an NVIDIA Jetson (L4T): its OpenCV and TensorRT come from JetPack (apt), not pip."""
    return Path(os.environ.get("RD_EDGE_TEGRA_RELEASE", "/etc/nv_tegra_release")).exists()


def opencv_install_hint() -> str:
    """How to install OpenCV here: JetPack's (apt) on a Jetson, where a pip wheel lacks
    GStreamer/CSI; the headless wheel elsewhere."""
    if is_jetson():
        return (
            "sudo apt install python3-opencv (JetPack's OpenCV; create the venv with "
            "--system-site-packages so it is seen: a pip OpenCV lacks GStreamer/CSI support)"
        )
    return "pip install opencv-python-headless"


def import_optional(
    module: str, needed_for: str, install_hint: str, error: Type[RdEdgeError] = BackendError
) -> Any:
    """Import ``module`` now; ``error`` naming what installs it when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        interrupt = _interruption(exc)
        if interrupt is not None:  # Ctrl-C (or SIGTERM) inside the package's own imports: a stop
            raise type(interrupt)(*interrupt.args) from exc
        if _findable(module):
            raise error(
                f"{needed_for} needs the {module} Python package; it is installed but failed to import: {exc}"
            ) from exc
        raise error(
            f"{needed_for} needs the {module} Python package, which is not installed here: "
            f"{install_hint} ({exc})"
        ) from exc


def _interruption(exc: BaseException) -> Optional[KeyboardInterrupt]:
    """The KeyboardInterrupt in the exception's chain (an import that Ctrl-C, or SIGTERM as the
    CLI's Terminated, broke), or None."""
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a None entry in sys.modules
        return False


class LazyModule:
    """A module imported on first attribute access (and looked up in sys.modules each time,
    so a test that swaps the module in sys.modules is seen)."""

    def __init__(
        self, name: str, needed_for: str, install_hint: str, error: Type[RdEdgeError] = BackendError
    ) -> None:
        self._name, self._needed_for, self._hint, self._error = name, needed_for, install_hint, error

    @property
    def name(self) -> str:
        return self._name

    def load(self, error: Optional[Type[RdEdgeError]] = None, needed_for: Optional[str] = None) -> ModuleType:
        """The imported module; the declared error type (or ``error``, for a caller in another
        layer, e.g. the exporter's ExportError) when it is missing."""
        return import_optional(self._name, needed_for or self._needed_for, self._hint, error or self._error)

    def installed(self) -> bool:
        """True when the package can be found, without importing it."""
        return _findable(self._name)

    def why_missing(self) -> Optional[str]:
        """None when installed, else one line naming what installs it."""
        return None if self.installed() else f"{self._name} is not installed: {self._hint}"

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.load(), attr)


def lazy_import(
    name: str, needed_for: str, install_hint: str, error: Type[RdEdgeError] = BackendError
) -> LazyModule:
    """Declare an optional module at the top of the module that uses it."""
    return LazyModule(name, needed_for, install_hint, error)


def import_cv2() -> Any:
    """``import cv2``; a numpy ABI mismatch becomes one OpenCVNumpyError line that says what to do.

    numpy 2 prints a page (message and stack) to stderr before OpenCV's "numpy.core.multiarray
    failed to import"; that page is held back and replaced by the line. An uncaught
    OpenCVNumpyError (rd-infer imports cv2 before its main) is printed as ``error: <line>``.
    """
    import io
    import sys
    from contextlib import redirect_stderr

    captured = io.StringIO()
    try:
        with redirect_stderr(captured):
            return importlib.import_module("cv2")
    except ModuleNotFoundError as exc:
        if exc.name != "cv2":
            raise
        # Not installed (a Jetson venv made without --system-site-packages): a stand-in whose first
        # use is one error naming the install, so commands that read no image (rd-build-engine)
        # still run, and those that do end in one line, not a traceback.
        from .errors import ImageReadError

        return LazyModule(
            "cv2",
            needed_for="reading and resizing images",
            install_hint=opencv_install_hint(),
            error=ImageReadError,
        )
    except ImportError as exc:
        if "multiarray" not in str(exc) and "NumPy" not in captured.getvalue():
            sys.stderr.write(captured.getvalue())
            raise
        error = OpenCVNumpyError(_cv2_numpy_message(exc))
    _print_uncaught(OpenCVNumpyError)
    raise error


def _cv2_numpy_message(exc: ImportError) -> str:
    import numpy

    spec = importlib.util.find_spec("cv2")
    here = f"numpy {numpy.__version__} ({numpy.__path__[0]})"
    cv2_at = f"OpenCV ({spec.origin if spec is not None else 'cv2'})"
    if int(numpy.__version__.split(".")[0]) >= 2:
        return (
            f"{cv2_at} was built for numpy 1.x, this environment imports {here} ({exc}): "
            f"`pip uninstall numpy` in this venv to use the system's numpy again (Jetson, "
            f'docs/jetson.md), or `pip install "numpy<2"`'
        )
    return (
        f"{cv2_at} was built for a newer numpy than {here} ({exc}): `pip install --upgrade numpy`, "
        f"or use the OpenCV built for this numpy"
    )


def _print_uncaught(kind: Type[BaseException]) -> None:
    """Uncaught ``kind`` exceptions print as one ``error: ...`` line (exit status 1), others as usual."""
    import sys

    previous = sys.excepthook

    def hook(exc_type: Type[BaseException], exc: BaseException, tb: Any) -> None:
        if issubclass(exc_type, kind):
            print(f"error: {exc}", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    sys.excepthook = hook
