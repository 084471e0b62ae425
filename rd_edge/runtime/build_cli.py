"""rd-build-engine: an rd-export ONNX graph -> TensorRT plan + sidecar, on the machine that runs it.

  rd-build-engine model.onnx [-o model.engine] [--precision fp32|fp16|int8] [--max-batch 8] [--opt-batch N]
                  [--workspace MB] [--timing-cache PATH] [--device-id 0] [--verbose]

TensorRT plans only run with the TensorRT version and GPU that built them, so a Jetson builds its
own from the ONNX: this command needs neither torch nor onnx (``rd-export model.onnx --engine``
calls the same builder on a workstation). int8 engines come from an int8 Q/DQ graph
(``rd-export model.onnx --precision int8 --calib-dir DIR``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from rd_edge.core.choices import Precision, values
from rd_edge.core.cli import DefaultsHelpFormatter, int_at_least, run_cli
from rd_edge.core.onnx_props import read_onnx_metadata

from .backends.trt.builder import DEFAULT_MAX_BATCH, build_engine, default_plan_path, import_tensorrt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rd-build-engine", description=__doc__, formatter_class=DefaultsHelpFormatter
    )
    p.add_argument("model", help="ONNX graph written by rd-export")
    p.add_argument(
        "-o",
        "--output",
        metavar="PLAN",
        help="plan path (default: <stem>.engine beside the model, <stem>_<precision>.engine "
        "when the precision differs from the graph's)",
    )
    p.add_argument(
        "--precision",
        choices=values(Precision),
        default=None,  # the graph's own precision
        help="default: the graph's own (fp32 graph + fp16 = FP16 builder flag)",
    )
    p.add_argument(
        "--max-batch",
        type=int_at_least(1),
        default=DEFAULT_MAX_BATCH,
        help=f"largest batch of a dynamic-batch graph (default {DEFAULT_MAX_BATCH})",
    )
    p.add_argument(
        "--opt-batch",
        type=int_at_least(1),
        default=None,
        help="the batch TensorRT tunes its tactics for, recorded in the sidecar (default: the "
        "model's typical batch: its tile count per frame for tiled models, else 1)",
    )
    p.add_argument(
        "--workspace", type=int_at_least(1), default=None, metavar="MB", help="builder workspace limit"
    )
    p.add_argument("--timing-cache", help="TensorRT timing cache: loaded when present, saved after the build")
    p.add_argument("--device-id", type=int_at_least(0), default=0, help="CUDA device to build on")
    p.add_argument("--verbose", action="store_true", help="print TensorRT's info messages")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        model = Path(args.model)
        meta = read_onnx_metadata(model)  # a missing/foreign file is one clear error, before TensorRT
        import_tensorrt()
        precision = args.precision or meta.precision
        plan = Path(args.output) if args.output else default_plan_path(model, precision, meta.precision)
        report = build_engine(
            model,
            plan,
            precision=precision,
            max_batch=args.max_batch,
            workspace_mb=args.workspace,
            timing_cache=args.timing_cache,
            device_id=args.device_id,
            verbose=args.verbose,
            opt_batch=args.opt_batch,
        )
        print(report.format())
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
