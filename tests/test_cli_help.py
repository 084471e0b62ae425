"""Every command's --help gives the defaults, and the README's install table is pyproject's extras."""

import argparse
import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from rd_edge.core.cli import DefaultsHelpFormatter

ROOT = Path(__file__).resolve().parents[1]
PARSERS = [
    "rd_edge.cli.train",
    "rd_edge.cli.evaluate",
    "rd_edge.cli.calibrate",
    "rd_edge.cli.main",
    "rd_export.cli",
    "rd_edge.runtime.cli",
    "rd_edge.runtime.build_cli",
    "rd_edge.runtime.serve",
    "benchmarks/latency.py",
]


def _parser(name: str) -> argparse.ArgumentParser:
    if name.endswith(".py"):
        spec = importlib.util.spec_from_file_location("latency_help", ROOT / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(name)
    return module.build_parser()


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


@pytest.mark.parametrize("name", PARSERS)
def test_help_shows_every_default(name):
    pytest.importorskip("onnx") if name == "rd_export.cli" else None
    for parser in _all_parsers(_parser(name)):
        assert issubclass(parser.formatter_class, DefaultsHelpFormatter), parser.prog
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
                continue
            assert action.help, f"{parser.prog} {action.option_strings[0]} has a default but no help"
            shown = "default" in action.help or f"(default: {action.default}" in " ".join(text.split())
            assert shown, (
                f"{parser.prog} {action.option_strings[0]}: default {action.default!r} not in --help"
            )


def test_rd_train_help_names_the_backbone_and_teacher_defaults():
    text = " ".join(_parser("rd_edge.cli.train").format_help().split())
    assert "(default: wide_resnet50_2)" in text and "imagenet (default)" in text


def _extras():
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_readme_install_table_is_pyproject():
    """One row per extra, and each row names every package that extra installs."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([\w-]+)` \|[^|]*\| (.*) \|$", section, re.M)}
    extras = _extras()
    assert set(rows) == set(extras), f"README rows {sorted(rows)} vs pyproject extras {sorted(extras)}"
    for extra, requirements in extras.items():
        for requirement in requirements:
            package = re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0]
            assert package in rows[extra], (
                f"README: extra {extra!r} installs {package}, the table does not say so"
            )


def test_rd_build_engine_defaults_keep_the_graphs_precision():
    """No --precision: None, so the engine takes the graph's own precision (an fp16 or int8 graph
    never silently builds an fp32 engine); batch limits from the builder's default."""
    from rd_edge.runtime.backends.trt.builder import DEFAULT_MAX_BATCH
    from rd_edge.runtime.build_cli import build_parser

    args = build_parser().parse_args(["model.onnx"])
    assert (args.precision, args.max_batch, args.opt_batch, args.device_id) == (
        None,
        DEFAULT_MAX_BATCH,
        None,
        0,
    )


def test_command_defaults_are_the_librarys_defaults():
    """One default, one place (issue 28): rd-edge demo-data's counts are write_demo_dataset's,
    rd-train's tile overlap is the tiling's DEFAULT_OVERLAP (what the runtime assumes)."""
    import inspect

    from rd_edge.cli.main import build_parser as rd_edge_parser
    from rd_edge.cli.train import build_parser as train_parser
    from rd_edge.core.tiling import DEFAULT_OVERLAP
    from rd_edge.data.synthetic import write_demo_dataset

    demo = rd_edge_parser().parse_args(["demo-data", "out"])
    library = inspect.signature(write_demo_dataset).parameters
    for name in ("image_size", "n_train", "n_test_good", "n_test_per_defect", "seed"):
        assert getattr(demo, name) == library[name].default, name
    assert train_parser().parse_args(["--data", "d"]).tile_overlap == DEFAULT_OVERLAP == 0.25


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--data", "d", "--masks", "m"], "--defect and --masks go with --good, not with --data"),
        (["--data", "d", "--defect", "x"], "--defect and --masks go with --good, not with --data"),
        (["--good", "g", "--masks", "m"], "--masks needs --defect"),
        ([], "give the data as --data DIR or as --good DIR"),
    ],
)
def test_data_arguments_that_do_not_go_together_are_usage_errors(argv, message, capsys):
    import argparse

    from rd_edge.cli._data import check_data_arguments

    parser = argparse.ArgumentParser()
    for flag in ("--data", "--good", "--defect", "--masks"):
        parser.add_argument(flag)
    with pytest.raises(SystemExit) as exit_info:
        check_data_arguments(parser, parser.parse_args(argv))
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
