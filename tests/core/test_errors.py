"""The exception hierarchy (rd_edge.core.errors) and what every command line does with it.

Library users catch RdEdgeError (or one of its kinds); the command lines turn any RdEdgeError
into one 'error: MESSAGE' line on stderr and exit status 1, and let anything else (a bug) keep
its traceback. Torch-free, like the module: runs on a runtime-only install.
"""

import inspect

import pytest

from rd_edge.core import errors
from rd_edge.core.cli import run_cli
from rd_edge.core.errors import (
    BackendError,
    CalibrationError,
    CheckpointError,
    ConfigError,
    DatasetError,
    ExportError,
    ImageReadError,
    MetadataError,
    NonFiniteOutputError,
    OpenCVNumpyError,
    OutputError,
    RdEdgeError,
    VerificationError,
)

ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, BaseException) and cls.__module__ == errors.__name__
]


def make(cls, message):
    """An instance of any error class, with its required extra arguments."""
    return cls(message, [None]) if cls is NonFiniteOutputError else cls(message)


def test_the_module_defines_the_documented_classes():
    """A class added or dropped shows here, so the tests below (which run over every class) are
    known to cover the whole hierarchy."""
    assert {cls.__name__ for cls in ERROR_CLASSES} == {
        "RdEdgeError",
        "ImageReadError",
        "DatasetError",
        "CheckpointError",
        "MetadataError",
        "BackendError",
        "ExportError",
        "VerificationError",
        "OutputError",
        "ConfigError",
        "NonFiniteOutputError",
        "CalibrationError",
        "OpenCVNumpyError",
    }


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_is_caught_by_the_one_base_class(cls):
    """The promise of the module: a library user catches RdEdgeError and gets every error rd-edge
    raises on purpose, and RdEdgeError is an ordinary Exception (not a BaseException like Ctrl-C)."""
    assert issubclass(cls, RdEdgeError) and issubclass(RdEdgeError, Exception)
    with pytest.raises(RdEdgeError) as info:
        raise make(cls, "bad input")
    assert type(info.value) is cls and str(info.value) == "bad input"


@pytest.mark.parametrize(
    "cls, also",
    [
        (VerificationError, ExportError),  # rd-export's callers catch ExportError for both
        (NonFiniteOutputError, BackendError),  # a backend that ran but produced NaN
        (ConfigError, ValueError),  # a wrong argument is a ValueError to Python code too
        (OpenCVNumpyError, ImportError),  # raised by `import`: code that guards imports catches it
    ],
)
def test_errors_that_are_also_another_kind(cls, also):
    with pytest.raises(also):
        raise make(cls, "x")


@pytest.mark.parametrize(
    "cls, other",
    [
        (ImageReadError, DatasetError),
        (DatasetError, ImageReadError),
        (MetadataError, BackendError),
        (ExportError, BackendError),
        (CheckpointError, MetadataError),
        (OutputError, ConfigError),
        (CalibrationError, ConfigError),
    ],
)
def test_sibling_kinds_do_not_catch_each_other(cls, other):
    """`except DatasetError` must not swallow an unreadable image (and so on): kinds are distinct."""
    assert not issubclass(cls, other)


def test_non_finite_output_keeps_the_good_frames_in_order():
    good = [object(), object()]
    exc = NonFiniteOutputError(
        "model produced non-finite scores for 1 of 3 frame(s)", [good[0], None, good[1]]
    )
    assert str(exc) == "model produced non-finite scores for 1 of 3 frame(s)"
    assert exc.args == ("model produced non-finite scores for 1 of 3 frame(s)",)
    assert exc.predictions == [good[0], None, good[1]] and exc.predictions[0] is good[0]
    # the error text a record gets for each bad frame (rd-infer --json, the pipeline): a fixed string
    assert NonFiniteOutputError.FRAME_ERROR == "model produced non-finite scores"


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_the_command_line_prints_every_error_as_one_line_and_exits_1(cls, capsys):
    message = f"cannot read image /data/x.png: no such file ({cls.__name__})"

    def body() -> int:
        print("partial output")
        raise make(cls, message)

    assert run_cli(body) == 1
    out, err = capsys.readouterr()
    assert err == f"error: {message}\n"  # one line, no traceback, no class name
    assert out == "partial output\n"


def test_real_user_errors_reach_the_command_line_as_their_kind(tmp_path, capsys):
    """Errors raised by the library itself, not constructed by the test: the documented kind, and
    through run_cli one line naming what was wrong, exit 1."""
    from rd_edge.core.images import list_images, read_image
    from rd_edge.core.metadata import ModelMetadata

    missing = tmp_path / "nope.png"
    with pytest.raises(ImageReadError):
        read_image(missing)
    with pytest.raises(DatasetError):
        list_images(tmp_path / "no_folder")
    with pytest.raises(MetadataError):
        ModelMetadata.from_json("[1, 2]", "m.onnx")

    assert run_cli(lambda: read_image(missing) and 0) == 1
    assert capsys.readouterr().err == f"error: cannot read image {missing}: no such file\n"


@pytest.mark.parametrize(
    "exc", [ValueError("bug"), TypeError("bug"), ImportError("bug"), RuntimeError("bug")]
)
def test_anything_else_is_a_bug_and_keeps_its_traceback(exc, capsys):
    """Only RdEdgeError is a user error: a plain ValueError (ConfigError's other base) or
    ImportError (OpenCVNumpyError's) propagates out of run_cli, to be reported with its traceback."""

    def body() -> int:
        raise exc

    with pytest.raises(type(exc)) as info:
        run_cli(body)
    assert info.value is exc
    assert capsys.readouterr().err == ""


def test_an_interrupt_is_not_an_error_and_may_say_what_was_kept(capsys):
    def body() -> int:
        raise KeyboardInterrupt("interrupted: checkpoint saved to runs/m.pt")

    assert not issubclass(KeyboardInterrupt, RdEdgeError)
    assert run_cli(body) == 130
    assert capsys.readouterr().err == "interrupted: checkpoint saved to runs/m.pt\n"
