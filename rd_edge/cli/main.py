"""The ``rd-edge`` command: one entry point with subcommands.

To add a subcommand, write a ``_add_<name>(subparsers)`` function that creates its parser and
sets ``handler`` (a function taking the parsed arguments and returning an exit code), and list
it in ``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from rd_edge.core.cli import DefaultsHelpFormatter, int_at_least, name_list, port_number, run_cli

_Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_demo_data(subparsers: _Subparsers) -> None:
    # The names only: rd_edge.data.synthetic imports OpenCV, which `rd-edge --help` and
    # `rd-edge station` do not need (demo-data's run imports it, and says what to install).
    from rd_edge.data.demo_names import DEMO_CATEGORIES, DEMO_DEFECTS

    parser = subparsers.add_parser(
        "demo-data",
        help="write a synthetic demo dataset in MVTec AD layout",
        description="Write procedurally generated texture categories in MVTec AD layout "
        f"(DIR/<category>/train/good, test/<type>, ground_truth/<type>). Categories: "
        f"{', '.join(DEMO_CATEGORIES)}; defect types: {', '.join(DEMO_DEFECTS)}.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="folder to write the categories in")
    parser.add_argument(
        "--categories",
        type=name_list,
        default=None,
        metavar="A,B",
        help="comma-separated categories (default: all)",
    )
    parser.add_argument(
        "--image-size",
        type=int_at_least(0),
        default=256,
        metavar="N",
        help="image side in pixels, >= 32 (default: 256)",
    )
    parser.add_argument(
        "--n-train",
        type=int_at_least(0),
        default=60,
        metavar="N",
        help="normal training images per category (default: 60)",
    )
    parser.add_argument(
        "--n-test-good",
        type=int_at_least(0),
        default=10,
        metavar="N",
        help="normal test images per category (default: 10)",
    )
    parser.add_argument(
        "--n-test-per-defect",
        type=int_at_least(0),
        default=8,
        metavar="N",
        help="test images per defect type (default: 8)",
    )
    parser.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="random seed; the same arguments write identical files (default: 0)",
    )
    parser.add_argument(
        "--defect-scale",
        default="normal",
        metavar="S",
        help="defect size: 'normal' (grows with --image-size), 'small' (as large as "
        "at 256 px whatever the image size: a few pixels once a high-resolution "
        "image is resized to 256; for tiling) or a factor such as 0.5 (default: normal)",
    )
    parser.add_argument(
        "--layout",
        default="mvtec",
        choices=["mvtec", "mvtec2", "visa", "folders"],
        help="folder layout to write: MVTec AD (default), MVTec AD 2, VisA, or plain "
        "folders good/, defect/, masks/",
    )
    parser.set_defaults(handler=_run_demo_data)


def _defect_scale(value: str, image_size: int) -> float:
    """--defect-scale as a factor: normal 1, small 256 / image size (at most 1), or a number."""
    named = {"normal": 1.0, "small": min(1.0, 256.0 / max(image_size, 1))}
    if value in named:
        return named[value]
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--defect-scale must be normal, small or a number, got {value!r}") from None


def _run_demo_data(args: argparse.Namespace) -> int:
    from rd_edge.data.demo_layouts import write_demo_layout
    from rd_edge.data.demo_names import DEMO_CATEGORIES, DEMO_DEFECTS

    try:
        folders = write_demo_layout(
            args.dir,
            args.layout,
            categories=args.categories or DEMO_CATEGORIES,
            image_size=args.image_size,
            n_train=args.n_train,
            n_test_good=args.n_test_good,
            n_test_per_defect=args.n_test_per_defect,
            seed=args.seed,
            defect_scale=_defect_scale(args.defect_scale, args.image_size),
        )
    except ValueError as exc:  # An argument out of range (e.g. --image-size 8).
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # DIR is a file, or not writable
        print(
            f"error: cannot write the demo dataset to {args.dir}: {exc.strerror or exc} "
            f"(DIR must be a folder, new or existing)",
            file=sys.stderr,
        )
        return 1
    n_defective = args.n_test_per_defect * len(DEMO_DEFECTS)
    for folder in folders:
        print(
            f"wrote {folder}: {args.n_train} training images, {args.n_test_good} good and "
            f"{n_defective} defective test images ({', '.join(DEMO_DEFECTS)}), "
            f"{args.image_size}x{args.image_size}, {args.layout} layout"
        )
        if args.layout == "folders":
            print(
                f"  train with: --good {folder / 'good'} --defect {folder / 'defect'} --masks {folder / 'masks'}"
            )
    return 0


def _add_station(subparsers: _Subparsers) -> None:
    parser = subparsers.add_parser(
        "station",
        help="review an evidence folder in the operator's station (web page), without inference",
        description="Serve the operator's station over an evidence folder written by rd-infer --evidence: "
        "the NG frames per stream, each to mark as false alarm or confirmed defect. Marks go to the review "
        "folder (rd-calibrate --review, rd-train --good read it). Needs the station extra.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("evidence", type=Path, metavar="EVIDENCE_DIR", help="rd-infer's --evidence folder")
    parser.add_argument(
        "--port", type=port_number(allow_any=True), default=8765, metavar="PORT", help="port to serve on"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="HOST",
        help="address to serve on; any other than 127.0.0.1 requires the printed token",
    )
    parser.add_argument(
        "--review", type=Path, metavar="DIR", help="review folder (default: 'review' beside EVIDENCE_DIR)"
    )
    parser.add_argument(
        "--for",
        type=float,
        dest="seconds",
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C or SIGTERM)",
    )
    parser.set_defaults(handler=_run_station)


def _run_station(args: argparse.Namespace) -> int:
    import signal
    import threading

    from rd_edge.core.errors import RdEdgeError
    from rd_edge.runtime import Station, StationServer

    if not args.evidence.is_dir():
        raise RdEdgeError(
            f"expected an evidence folder (rd-infer --evidence DIR) at {args.evidence}, found "
            f"{'a file' if args.evidence.exists() else 'nothing'}"
        )
    review = args.review if args.review is not None else args.evidence.parent / "review"
    station = Station(args.evidence, review, title=f"rd-edge station: {args.evidence.name}")
    server = StationServer(station, args.port, host=args.host)
    done = threading.Event()
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    except ValueError:  # not the main thread (called from a library): --for or Ctrl-C end it
        previous = None
    token = " (the token in it is needed from other machines)" if server.token else ""
    print(
        f"station: {server.url} (review marks go to {review}; Ctrl-C ends){token}",
        file=sys.stderr,
        flush=True,
    )
    try:
        done.wait(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        server.close()
    return 0


# One entry per subcommand, in the order `rd-edge --help` lists them.
_SUBCOMMANDS: List[Callable[[_Subparsers], None]] = [_add_demo_data, _add_station]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rd-edge`` with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="rd-edge",
        description="Reverse Distillation (RD4AD) anomaly detection tools.",
        formatter_class=DefaultsHelpFormatter,
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``rd-edge``; returns the exit code (0 ok, 1 rd-edge error, 2 usage error, 130 Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    # Expected failures (bad folder, corrupt file) print one line that says what to do.
    return run_cli(lambda: int(handler(args)))


if __name__ == "__main__":
    sys.exit(main())
