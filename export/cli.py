"""rd-export: fuse a checkpoint into one verified ONNX graph (anomaly-map reduction included)."""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from rd_edge.cli._common import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rd-export", description=__doc__)
    p.add_argument("model", help="model.pt from rd-train")
    p.add_argument("-o", "--output", help="ONNX path (default: next to the checkpoint, same stem)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 11..17 (default 17: TensorRT 8.5+)")
    p.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"],
                   help="fp16: half weights and compute, float32 input/output (CUDA/TensorRT)")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check against the torch model")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from .onnx_export import export_onnx  # torch is imported only for the ONNX path

        report = export_onnx(args.model, args.output, opset=args.opset, batch=args.batch,
                             precision=args.precision, verify=not args.no_verify)
        print(report.format())
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
