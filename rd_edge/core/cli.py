"""What every rd-edge command line shares: user errors print one line, not a traceback."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from typing import Any, Callable, Iterator, List, Optional

from .errors import RdEdgeError
from .optional import opencv_install_hint


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``, systemd) raised where Ctrl-C would be: the same cleanup
    runs (temporary files removed, rd-train's checkpoint written), the exit code is 143."""


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI body the way every rd-edge command ends: RdEdgeError -> 'error: ...' on stderr,
    exit 1; a missing package a command needs (OpenCV) -> one line naming what installs it, exit
    1; Ctrl-C -> 'interrupted', exit 130, SIGTERM the same with exit 143; stdout closed by the
    reader (``| head``) -> quiet, exit 0; warnings as 'warning: ...' lines."""
    format_before = warnings.formatwarning
    route_warnings()
    try:
        with sigterm_as_interrupt():
            return _run(body)
    finally:  # a CLI run inside another program (a test, a notebook) leaves its warnings as they were
        warnings.formatwarning = format_before


def raise_terminated(signum: int, frame: object) -> None:
    """The SIGTERM handler of a running CLI (a module function: rd-train recognizes it)."""
    raise Terminated("terminated")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises Terminated in the main thread while the block runs. Python's default is to
    die at once, which leaves an int8 export's calibration copies (hundreds of MB) in the temp
    directory and rd-train's last steps unsaved. A body that handles SIGTERM itself (rd-infer's
    pipeline: a normal end) installs its own handler over this one."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can set handlers; the default stays
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:  # the embedding program chose (or ignores) SIGTERM
        yield
        return
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(body: Callable[[], int]) -> int:
    try:
        code = body()
        sys.stdout.flush()  # a reader that went away is noticed here, not at interpreter exit
        return code
    except RdEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        hint = missing_module_hint(exc.name or "")
        if hint is None:
            raise
        print(f"error: {hint}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        stdout_closed()
        return 0
    except KeyboardInterrupt as exc:  # the body may say what it kept (rd-train: the checkpoint)
        print(str(exc) or "interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


# Packages a command imports on its path whose absence is a setup step, not a bug: what installs them.
_PIP_NAMES = {
    "cv2": "opencv-python-headless",
    "tqdm": "tqdm",
    "sklearn": "scikit-learn",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
}


def missing_module_hint(name: str) -> Optional[str]:
    """One line for a missing package a command needs, naming the install for this platform;
    None for modules rd-edge does not know (a real bug: the traceback stays)."""
    top = name.partition(".")[0]
    if top not in _PIP_NAMES:
        return None
    how = opencv_install_hint() if top == "cv2" else f"pip install {_PIP_NAMES[top]}"
    return f"this command needs the Python package {top!r}, which is not installed here; install it: {how}"


def stdout_closed() -> None:
    """The reader of stdout went away (``rd-infer ... | head``): point stdout at /dev/null so
    nothing more is written, nor a BrokenPipeError reported at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (a test's StringIO)
        pass


def route_warnings() -> None:
    """Python warnings as one 'warning: MESSAGE' line on stderr, not 'path:line: UserWarning'.
    Only the format changes: warnings.catch_warnings(record=True) (pytest.warns) still records."""

    def one_line(message: Any, category: Any, filename: str, lineno: int, line: Optional[str] = None) -> str:
        return f"warning: {message}\n"

    warnings.formatwarning = one_line


def passive_openmp() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless the user set it; call before torch is imported. On a shared
    CPU, OpenMP threads that spin while waiting burn the cores others need: a training step took
    3.73 s of CPU with torch's default (spinning) against 0.52 s passive, 2 threads, load 14."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def show_progress(requested: bool = True) -> bool:
    """Progress bars only when asked for and stderr is a terminal: in a log, tqdm's carriage
    returns are noise."""
    try:
        return requested and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def format_duration(seconds: float) -> str:
    """'42 s', '7 min 10 s', '2 h 05 min': how long a step will take, for a person."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every rd-edge command's --help: each option's default, except where there is nothing to
    show (None, flags that are off) or the help already names it ('default' in the text); the
    description as written (line breaks kept)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or "%(default)" in text:
            return text
        return super()._get_help_string(action) or ""


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def port_number(allow_any: bool = False) -> Callable[[str], int]:
    """argparse type: a TCP port, 1..65535 (0 too with ``allow_any``: the system picks a free one)."""
    low = 0 if allow_any else 1

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"expected a port number {low}..65535, got {text!r}")
        return value

    return parse


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1) (e.g. an overlap)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def name_list(text: str) -> List[str]:
    """argparse type: a comma-separated list of names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names
