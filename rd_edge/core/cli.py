"""What every rd-edge command line shares: user errors print one line, not a traceback."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, List

from .errors import RdEdgeError


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI body; RdEdgeError -> 'error: ...' on stderr and exit 1, Ctrl-C -> 130."""
    try:
        return body()
    except RdEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


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
