"""Docs that work literally: every command in the ```bash blocks of README.md, docs/*.md and
cpp_examples/README.md is checked. rd-edge's own commands are parsed by that tool's own argparse
parser (most need a GPU, a camera or a trained model to run); `make` targets must exist in the
Makefile; `pip install` names extras pyproject.toml declares, from a checkout (the package is not
on PyPI); commands of other programs (apt, cmake, docker, ...) are listed as not ours. Each
command is its own test, named FILE:LINE, and a failure prints the command and the parser's
message. Synopses with [optional] parts belong in plain ``` blocks, not in bash ones.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "cpp_examples" / "README.md"]

# Programs rd-edge does not own: the docs name them, the test does not run them.
NOT_OURS = {
    "sudo",
    "apt",
    "apt-get",
    "cmake",
    "docker",
    "export",
    "source",
    "cp",
    "echo",
    "CUDA",
    "TRT",
    "python3",
    "scp",
    "rsync",
    "ssh",
    "systemctl",
    "journalctl",
    "tar",
    "git",
    "cd",
    "mkdir",
}


def parser_of(name: str) -> Callable[[], argparse.ArgumentParser]:
    """The build_parser of each of rd-edge's commands."""
    modules = {
        "rd-train": "rd_edge.cli.train",
        "rd-eval": "rd_edge.cli.evaluate",
        "rd-calibrate": "rd_edge.cli.calibrate",
        "rd-edge": "rd_edge.cli.main",
        "rd-export": "rd_export.cli",
        "rd-infer": "rd_edge.runtime.cli",
        "rd-build-engine": "rd_edge.runtime.build_cli",
        "rd-serve": "rd_edge.runtime.serve",
    }
    return importlib.import_module(modules[name]).build_parser


def doc_commands() -> List[Tuple[str, str]]:
    """(FILE:LINE, command) for every command line of every ```bash block (continuations joined)."""
    found = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        lang, pending, start = None, "", 0
        for number, line in enumerate(lines, 1):
            if line.startswith("```"):
                lang = line[3:].strip() if lang is None else None
                continue
            if lang != "bash" or (not pending and (not line.strip() or line.lstrip().startswith("#"))):
                continue
            if not pending:
                start = number
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            if not _complete(pending):  # a quoted argument over several lines (bash -c '...')
                pending += "\n"
                continue
            found.append((f"{path.relative_to(ROOT)}:{start}", pending.strip()))
            pending = ""
    return found


def _complete(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:  # no closing quotation
        return False
    return True


def pieces(command: str) -> List[List[str]]:
    """The words of each command of a && / || / ; / | chain; comments dropped, leading
    VAR=value assignments skipped."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    out: List[List[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            out.append([])
        else:
            out[-1].append(token)
    for argv in out:
        while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", argv[0]):
            del argv[0]
    return [argv for argv in out if argv]


def check_ours(argv: List[str]) -> None:
    """Parse with the tool's own parser; AssertionError with its message when it refuses."""
    program = Path(argv[0]).name
    args = ["--data", "data"] if argv[1:2] == ["..."] else []  # "rd-train ..." elides the data
    rest = args + [a for a in argv[1:] if a != "..."]
    parser = parser_of(program)()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            if program == "rd-infer":
                parser.parse_intermixed_args(rest)  # as rd-infer's main does
            else:
                parser.parse_args(rest)
    except SystemExit:
        raise AssertionError(f"{program}'s parser refuses it: {err.getvalue().strip()}") from None
    assert not any(a.startswith("[") for a in rest), (
        "a [synopsis] part in a bash block: not a literal command"
    )


def check_make(argv: List[str]) -> None:
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+):", (ROOT / "Makefile").read_text(), re.M))
    for target in [a for a in argv[1:] if not a.startswith("-") and "=" not in a]:
        assert target in targets, f"the Makefile has no target {target!r}"


def check_pip(argv: List[str]) -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for spec in [a for a in argv if "[" in a or a in ("rd-edge", "rd_edge")]:
        name, _, wanted = spec.partition("[")
        assert name in (".", "./", str(ROOT)) or name.endswith((".whl", "/")), (
            f"{spec!r}: rd-edge is installed from a checkout ('.[extra]') or a built wheel, not by name from PyPI"
        )
        for extra in filter(None, wanted.rstrip("]").split(",")):
            assert extra in extras, f"pyproject.toml declares no extra {extra!r} (it has {sorted(extras)})"


def check_python(argv: List[str]) -> None:
    if argv[1:3] in (["-m", "pytest"], ["-m", "venv"], ["-m", "build"]):
        return
    script = ROOT / argv[1]
    assert script.is_file(), f"no script {argv[1]}"
    if script == ROOT / "benchmarks" / "latency.py":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        try:
            parser = importlib.import_module("latency").build_parser()
        finally:
            sys.path.remove(str(ROOT / "benchmarks"))
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parser.parse_args(argv[2:])
        except SystemExit:
            raise AssertionError(
                f"benchmarks/latency.py's parser refuses it: {err.getvalue().strip()}"
            ) from None


def check(command: str) -> str:
    """Check one documented command; returns what was done ('parsed', 'not ours', ...)."""
    outcome = "parsed"
    for argv in pieces(command):
        program = Path(argv[0]).name
        handlers: Dict[str, Callable[[List[str]], None]] = {
            "make": check_make,
            "pip": check_pip,
            "python": check_python,
        }
        if program.startswith("rd-") or program == "rd-edge":
            check_ours(argv)
        elif program in handlers:
            handlers[program](argv)
        elif program.endswith("pip") or argv[1:3] == ["-m", "pip"]:
            check_pip(argv)
        elif program == "rd_infer":  # the C++ example: its parser is tested in tests/cpp
            outcome = "C++ (tests/cpp)"
        elif (
            program in NOT_OURS
            or program.startswith("python3")
            or program.startswith("nv")
            or program.startswith("jetson_")
        ):
            outcome = "not ours"
        else:
            raise AssertionError(
                f"{program!r}: not a command the docs test knows; add it to NOT_OURS or a check"
            )
    return outcome


COMMANDS = doc_commands()


@pytest.mark.parametrize("where, command", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_documented_command_works(where, command):
    try:
        check(command)
        problem = None
    except AssertionError as exc:
        problem = str(exc)
    if problem is not None:
        pytest.fail(f"{where}: {command}\n  {problem}", pytrace=False)


def test_the_docs_have_commands():
    assert len(COMMANDS) > 40
    assert {w.split(":")[0] for w, _ in COMMANDS} >= {"README.md", "docs/jetson.md", "docs/serving.md"}


def test_readme_names_the_extras_the_makefile_installs():
    extras = re.search(r'pip install -q -e "(\.\[[^\]]+\])"', (ROOT / "Makefile").read_text()).group(1)
    assert f'pip install -e "{extras}"' in (ROOT / "README.md").read_text(), f"README should name {extras}"


# An install hint naming rd-edge as a package on an index: rd-edge[x] or rd-edge after pip install, quoted or not,
# with options (-U) before it.
BY_NAME = re.compile(r"""pip install (?:-\S+ )*['"]?rd[-_]edge\b""")


def test_no_install_hint_names_rd_edge_as_a_published_package():
    """Prose, error messages and comments too (the bash blocks are checked above): rd-edge is not
    on PyPI, so every hint installs the checkout ('.[extra]') or a wheel."""
    files = [
        *DOCS,
        *(
            p
            for top in ("rd_edge", "export", "benchmarks", "scripts", "tests")
            for p in (ROOT / top).rglob("*.py")
        ),
    ]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BY_NAME.search(line)
    ]
    assert len(files) > 100 and not found, "\n".join(found)
