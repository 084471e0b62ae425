"""rd-eval: image/pixel AUROC, AUPRO and F1-max of a checkpoint on a category's test split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from rd_edge.core.cli import DefaultsHelpFormatter, passive_openmp, run_cli
from rd_edge.core.files import check_writable_file, write_text_atomic

from ._data import add_data_arguments, check_data_arguments, open_data


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rd-eval", description=__doc__, formatter_class=DefaultsHelpFormatter)
    p.add_argument("model", help="model.pt written by rd-train")
    add_data_arguments(p, need_defects=True)
    p.add_argument("--json", dest="json_out", help="write the metrics as JSON here")
    p.add_argument(
        "--save-maps",
        help="write per-image maps (.npy) and overlays (.png: rd-infer's, plus the ground truth in magenta) here",
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        help="write a report to open in a browser: DIR/index.html (overlay thumbnails with the ground "
        "truth, verdicts at the calibrated thresholds, score histogram, ROC and PR curves, "
        "metrics per defect type) and DIR/results.csv",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda when present"
    )
    p.add_argument(
        "--full-resolution",
        action="store_true",
        help="pixel metrics at the test images' own size (as rd-infer returns maps) "
        "instead of the model's input size; always on for models trained with --tile",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_data_arguments(parser, args)

    passive_openmp()  # before torch is imported (in body)

    def body() -> int:
        if args.json_out:  # before torch is imported and minutes of evaluation, not after
            check_writable_file(args.json_out, "metrics JSON")
        from ..evaluate import evaluate_checkpoint
        from ..metrics import format_metrics_table

        result = evaluate_checkpoint(
            args.model,
            None,
            args.device,
            args.batch_size,
            args.save_maps,
            progress=not args.quiet,
            full_resolution=args.full_resolution,
            dataset=open_data(args),
            report=args.report,
        )
        print(format_metrics_table(result))
        if args.json_out:
            write_text_atomic(args.json_out, json.dumps(result, indent=2))
            print(f"metrics written to {args.json_out}")
        if args.report:
            print(f"report written to {Path(args.report) / 'index.html'}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
