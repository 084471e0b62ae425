"""How every command ends, and the shared argparse types."""

import argparse

import pytest

from rd_edge.core.cli import fraction, int_at_least, name_list, port_number, run_cli
from rd_edge.core.errors import ConfigError


def test_errors_are_one_line_and_exit_codes_are_fixed(capsys):
    def fails() -> int:
        raise ConfigError("batch_size must be >= 1")

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_cli(fails) == 1 and capsys.readouterr().err == "error: batch_size must be >= 1\n"
    assert run_cli(interrupted) == 130 and capsys.readouterr().err == "interrupted\n"
    assert run_cli(lambda: 2) == 2


@pytest.mark.parametrize(
    "parse, text, value",
    [
        (int_at_least(1), "3", 3),
        (fraction, "0.25", 0.25),
        (name_list, "a, b,,c", ["a", "b", "c"]),
        (port_number(True), "0", 0),
    ],
)
def test_argument_types_parse(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize(
    "parse, text, message",
    [
        (int_at_least(1), "0", "integer >= 1"),
        (int_at_least(1), "x", "integer"),
        (fraction, "1", r"\[0, 1\)"),
        (name_list, " , ", "comma-separated"),
        (port_number(), "0", "1..65535"),
    ],
)
def test_argument_types_refuse_with_what_was_expected(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)


@pytest.mark.parametrize("minimum", [0, 1, 32])
def test_int_at_least_takes_its_minimum_and_refuses_one_below(minimum):
    """The boundary itself (issue 28): --batch-size 1, --tile 32 and --device-id 0 are valid."""
    parse = int_at_least(minimum)
    assert (parse(str(minimum)), parse(str(minimum + 1))) == (minimum, minimum + 1)
    with pytest.raises(argparse.ArgumentTypeError, match=f"integer >= {minimum}"):
        parse(str(minimum - 1))
