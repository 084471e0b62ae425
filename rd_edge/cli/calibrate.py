"""rd-calibrate: image and pixel thresholds from labelled images, changed without re-export.

Writes thresholds.json beside MODEL (and into the checkpoint when MODEL is a .pt, so later exports
carry them). rd-infer and the Detector read thresholds.json, so no rd-export is needed.
"""
from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rd-calibrate", description=__doc__,
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("model", help="model.pt, model.onnx or model.engine (the exported graph is what runs)")
    add_data_arguments(p)
    p.add_argument("--method", type=_method, default="f1", metavar="f1|zero-escape|normal-quantile[:q]",
                   help="f1 (default): best F1 on the labelled images; zero-escape: flag every defective "
                        "image; normal-quantile[:q]: the q-quantile of good images (default 0.99), the one "
                        "for data without defects")
    p.add_argument("--review", metavar="REVIEW_DIR",
                   help="the station's review folder: false alarms join the good images, confirmed and missed "
                        "defects the defective ones; prints how the false-alarm and escape rates change")
    p.add_argument("--batch-size", type=int_at_least(1), default=8, metavar="N", help="images per forward pass")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_data_arguments(parser, args)

    def body() -> int:
        from rd_edge.core.thresholds import thresholds_path
        from rd_edge.threshold_calibration import calibrate_thresholds, format_report

        result = calibrate_thresholds(args.model, open_data(args), args.method, args.batch_size,
                                      progress=not args.quiet, review=args.review)
        print(format_report(result))
        extra = " and into the checkpoint" if args.model.lower().endswith(".pt") else ""
        print(f"wrote {thresholds_path(args.model)}{extra}; rd-infer uses these thresholds without re-export")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
