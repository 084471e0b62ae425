"""The data arguments rd-train, rd-eval and rd-calibrate share: --data DIR, or plain folders."""

from __future__ import annotations

import argparse
from typing import Any


def add_data_arguments(parser: argparse.ArgumentParser, need_defects: bool = False) -> None:
    """--data DIR (MVTec AD, MVTec AD 2, VisA, or a folder of good images) or --good/--defect/--masks."""
    group = parser.add_argument_group("data (one of --data or --good)")
    group.add_argument(
        "--data",
        metavar="DIR",
        help="dataset folder: an MVTec AD or MVTec AD 2 category, a VisA object "
        "(ROOT/<object> with ROOT/split_csv/1cls.csv), or a folder of good images",
    )
    group.add_argument("--good", metavar="DIR", help="plain folders: the good (normal) images")
    group.add_argument(
        "--defect",
        metavar="DIR",
        help="plain folders: defect images" + (" (needed here)" if need_defects else ""),
    )
    group.add_argument(
        "--masks",
        metavar="DIR",
        help="plain folders: defect masks named <stem>.png or <stem>_mask.png (optional)",
    )


def check_data_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace, extra_good: bool = False
) -> None:
    """Usage errors (exit 2) for a missing or doubled data source. ``extra_good``: --data with
    --good adds good images (rd-train: a folder, or the station's review folder)."""
    both = args.data is not None and args.good is not None
    if (args.data is None and args.good is None) or (both and not extra_good):
        parser.error("give the data as --data DIR or as --good DIR [--defect DIR [--masks DIR]]")
    if args.data is not None and (args.defect or args.masks):
        parser.error("--defect and --masks go with --good, not with --data")
    if args.masks and not args.defect:
        parser.error("--masks needs --defect (the masks belong to the defect images)")


def open_data(args: argparse.Namespace) -> Any:
    """The dataset the arguments name (rd_edge.data.open_dataset)."""
    from rd_edge.data import open_dataset

    return open_dataset(args.data, good=args.good, defect=args.defect, masks=args.masks)
