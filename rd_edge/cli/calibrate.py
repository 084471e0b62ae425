"""rd-calibrate: image and pixel thresholds from labelled images, changed without re-export.

Writes MODEL.thresholds.json beside MODEL (and into the checkpoint when MODEL is a .pt, so later exports
carry them). rd-infer and the Detector read that file, so no rd-export is needed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from rd_edge.core.cli import DefaultsHelpFormatter, int_at_least, run_cli

from ._data import add_data_arguments, check_data_arguments, open_data


def _method(text: str) -> str:
    from rd_edge.threshold_calibration import parse_method

    try:
        parse_method(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def rate(text: str) -> float:
    """argparse type: a rate in [0, 1], as a fraction (0.01) or a percentage (1%)."""
    value_text, percent = (text[:-1], True) if text.endswith("%") else (text, False)
    try:
        value = float(value_text) / (100.0 if percent else 1.0)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1] or a percentage (1%), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rd-calibrate", description=__doc__, formatter_class=DefaultsHelpFormatter
    )
    p.add_argument("model", help="model.pt, model.onnx or model.engine (the exported graph is what runs)")
    add_data_arguments(p)
    p.add_argument(
        "--method",
        type=_method,
        default="false-alarms",
        metavar="false-alarms|f1|zero-escape|normal-quantile[:q]",
        help="false-alarms (default): the lowest threshold that flags at most --max-false-alarms "
        "of the good images, escapes reported; f1: best F1 on the labelled images (on "
        "defect-heavy data it favours flagging everything); zero-escape: flag every "
        "defective image; normal-quantile[:q]: the q-quantile of good images (default 0.99)",
    )
    p.add_argument(
        "--max-false-alarms",
        type=rate,
        default=0.01,
        metavar="RATE",
        help="false-alarm target of --method false-alarms, and the level above which every "
        "method warns: a fraction or a percentage (0.01 = 1%%; default 1%%)",
    )
    p.add_argument(
        "--max-escapes",
        type=rate,
        default=0.10,
        metavar="RATE",
        help="escape rate (defective images passed) above which every method warns (default 10%%)",
    )
    p.add_argument(
        "--review",
        metavar="REVIEW_DIR",
        help="the station's review folder: false alarms join the good images, confirmed and missed "
        "defects the defective ones; prints how the false-alarm and escape rates change",
    )
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=8, metavar="N", help="images per forward pass"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_data_arguments(parser, args)

    def body() -> int:
        from rd_edge.core.thresholds import thresholds_path
        from rd_edge.threshold_calibration import calibrate_thresholds, format_report

        result = calibrate_thresholds(
            args.model,
            open_data(args),
            args.method,
            args.batch_size,
            progress=not args.quiet,
            review=args.review,
            max_false_alarms=args.max_false_alarms,
            max_escapes=args.max_escapes,
        )
        print(format_report(result))
        for warning in result.report.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
        extra = " and into the checkpoint" if args.model.lower().endswith(".pt") else ""
        print(f"wrote {thresholds_path(args.model)}{extra}; rd-infer uses these thresholds without re-export")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
