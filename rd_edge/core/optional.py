"""Optional heavy packages (onnxruntime, tensorrt, pycuda, ...): declared once, imported on first use.

In the spirit of Polygraphy's ``mod.lazy_import``: a module declares at its top

    trt = lazy_import("tensorrt", needed_for="the TensorRT backend", install_hint="JetPack or ...")

and nothing is imported until an attribute of ``trt`` is read. A missing package is then a
typed error naming what installs it, never a bare ImportError traceback.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any, Optional, Type

from .errors import BackendError, RdEdgeError


def import_optional(module: str, needed_for: str, install_hint: str,
                    error: Type[RdEdgeError] = BackendError) -> Any:
    """Import ``module`` now; ``error`` naming what installs it when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if _interrupted(exc):  # Ctrl-C inside the package's own imports: a stop, not a missing package
            raise KeyboardInterrupt from exc
        if _findable(module):
            raise error(f"{needed_for} needs the {module} Python package; it is installed but failed to "
                        f"import: {exc}") from exc
        raise error(f"{needed_for} needs the {module} Python package, which is not installed here: "
                    f"{install_hint} ({exc})") from exc


def _interrupted(exc: BaseException) -> bool:
    """True when a KeyboardInterrupt is in the exception's chain (an import that Ctrl-C broke)."""
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a None entry in sys.modules
        return False


class LazyModule:
    """A module imported on first attribute access (and looked up in sys.modules each time,
    so a test that swaps the module in sys.modules is seen)."""

    def __init__(self, name: str, needed_for: str, install_hint: str,
                 error: Type[RdEdgeError] = BackendError) -> None:
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


def lazy_import(name: str, needed_for: str, install_hint: str,
                error: Type[RdEdgeError] = BackendError) -> LazyModule:
    """Declare an optional module at the top of the module that uses it."""
    return LazyModule(name, needed_for, install_hint, error)
