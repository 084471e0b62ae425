"""rd-export: checkpoint -> one fused, verified ONNX graph; int8 Q/DQ quantization; TensorRT engines.

  rd-export model.pt [-o model.onnx] [--precision fp32|fp16]
  rd-export model.pt|model.onnx --precision int8 --calib-dir DIR [--int8-target tensorrt|cpu]
            [--int8-scope student|full] [-o model_int8.onnx]
  rd-export model.pt|model.onnx --engine [model.engine] [--precision fp32|fp16|int8] [--calib-dir DIR]
            [--max-batch N] [--opt-batch N] [--workspace MB] [--timing-cache PATH]
  rd-export model.pt|model.onnx [--engine] --triton-repo DIR [--max-batch N] [--instances K]
  rd-export model.pt|model.onnx --format openvino [--precision fp32|bf16|int8] [--calib-dir DIR]
            [-o model.xml]

Only the checkpoint path imports torch: from an ONNX file (e.g. on a Jetson) nothing does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from rd_edge.core.choices import (
    CalibrationMethod,
    ExportFormat,
    InferencePrecision,
    Int8Scope,
    Int8Target,
    Precision,
    values,
)
from rd_edge.core.cli import DefaultsHelpFormatter, int_at_least, run_cli
from rd_edge.core.errors import ExportError
from rd_edge.core.files import check_writable_file

if TYPE_CHECKING:  # the int8 machinery loads only for --precision int8
    from .openvino_int8 import AccuracyTarget
    from .scope_search import FidelityBound, FidelityImages

_PRECISIONS = list(dict.fromkeys(values(Precision) + values(InferencePrecision)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rd-export", description=__doc__, formatter_class=DefaultsHelpFormatter)
    p.add_argument("model", help="model.pt from rd-train, or an ONNX graph written by rd-export")
    p.add_argument(
        "-o",
        "--output",
        help="ONNX path, or .xml for --format openvino (default: next to the "
        "input, same stem; <stem>_<precision> for int8 and bf16)",
    )
    p.add_argument(
        "--format",
        choices=values(ExportFormat),
        default=ExportFormat.ONNX.value,
        help="onnx: the fused graph; openvino: an OpenVINO IR (model.xml + model.bin) with the "
        "same metadata, checked against the fp32 graph",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 11..17 (default 17: TensorRT 8.5+)")
    p.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size")
    p.add_argument(
        "--precision",
        choices=_PRECISIONS,
        default=None,
        help="fp32 (default for a checkpoint); fp16: half weights and compute, float32 "
        "input/output; int8: Q/DQ graph (OpenVINO: NNCF) calibrated on --calib-dir; "
        "bf16 (--format openvino): run in bf16 where the CPU has it",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the parity check against the torch model")
    p.add_argument(
        "--keep-failed",
        action="store_true",
        help="keep a graph that fails verification as <stem>.failed.onnx (the output path is "
        "never overwritten by a failed export)",
    )
    q = p.add_argument_group("int8")
    q.add_argument(
        "--calib-dir",
        help="good images for int8 calibration (a folder, or a category folder whose train/good is used)",
    )
    q.add_argument(
        "--int8-target",
        choices=values(Int8Target),
        default=None,
        help="cpu (default without --engine: u8 activations, what ONNX Runtime on x86 runs "
        "fastest and most faithfully) or tensorrt (symmetric int8, what engines need; the "
        "default with --engine)",
    )
    q.add_argument(
        "--int8-scope",
        choices=values(Int8Scope),
        default=None,
        help="student (default for ONNX): OCBE's bottleneck stage and the student, the rest float; "
        "full: every teacher/OCBE/student convolution (faster, less accurate); mixed (OpenVINO): "
        "full, then NNCF's accuracy control reverts layers to float until the fidelity bound holds; "
        "auto (default for OpenVINO): full (OpenVINO: then mixed), then student, the fastest within the bound",
    )
    q.add_argument(
        "--int8-headroom",
        type=float,
        default=None,
        metavar="K",
        help="widen the activation ranges calibrated on good images K times, so that int8 does not "
        "clip what a defect drives past them (default: --format openvino: chosen among 1, 1.5, 2 and "
        "3 on the fidelity images, 2 without them; ONNX: 2)",
    )
    q.add_argument(
        "--fidelity-dir",
        type=Path,
        metavar="DIR",
        help="--int8-scope auto/mixed: also judge fidelity on these images (e.g. DATA/<category>/test, "
        "defects included); held-out good images of --calib-dir are always used",
    )
    q.add_argument(
        "--min-spearman",
        type=float,
        default=None,
        help="--int8-scope auto/mixed: lowest score rank correlation with fp32 (default 0.99)",
    )
    q.add_argument(
        "--max-verdict-changes",
        type=int,
        default=None,
        help="--int8-scope auto/mixed: most images whose verdict may change at the threshold (default 0)",
    )
    q.add_argument(
        "--calib-images",
        type=int_at_least(1),
        default=None,
        help="at most this many calibration images (default 64)",
    )
    q.add_argument(
        "--calib-method",
        choices=values(CalibrationMethod),
        default=None,
        help="calibration method (default: the target's, see rd_export.quantize.RECIPES)",
    )
    e = p.add_argument_group("TensorRT engine")
    e.add_argument(
        "--engine",
        nargs="?",
        const="",
        default=None,
        metavar="PLAN",
        help="build a TensorRT plan (default path: <stem>[_<precision>].engine) and its sidecar",
    )
    e.add_argument(
        "--max-batch", type=int_at_least(1), default=None, help="largest batch of the engine (default 8)"
    )
    e.add_argument(
        "--opt-batch",
        type=int_at_least(1),
        default=None,
        help="the batch TensorRT tunes its tactics for, recorded in the sidecar (default: the "
        "model's typical batch: its tile count per frame for tiled models, else 1; at most "
        "--max-batch)",
    )
    e.add_argument(
        "--workspace", type=int_at_least(1), default=None, metavar="MB", help="builder workspace limit in MiB"
    )
    e.add_argument(
        "--timing-cache", help="TensorRT timing cache file: loaded when present, saved after the build"
    )
    e.add_argument("--verbose", action="store_true", help="print TensorRT's info messages")
    t = p.add_argument_group("Triton Inference Server")
    t.add_argument(
        "--triton-repo",
        type=Path,
        metavar="DIR",
        help="also write a Triton model repository: DIR/rd_<name>/1/model.onnx (onnxruntime "
        "backend) or, with --engine, model.plan (tensorrt backend), and its config.pbtxt",
    )
    t.add_argument(
        "--instances",
        type=int_at_least(1),
        default=None,
        metavar="K",
        help="Triton model instances (instance_group count, default 1)",
    )
    return p


def _is_onnx(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


def _check_args(args: argparse.Namespace, model: Path) -> None:
    """Reject option combinations that would otherwise be silently ignored."""
    if not model.is_file():
        found = "a folder" if model.is_dir() else "no such file"
        raise ExportError(f"{model}: {found}; expected model.pt from rd-train or an .onnx from rd-export")
    _check_format(args)
    if args.calib_dir is not None and args.precision != "int8":
        raise ExportError("--calib-dir is for --precision int8; add --precision int8 or drop --calib-dir")
    auto_flags = (
        ("--fidelity-dir", args.fidelity_dir),
        ("--min-spearman", args.min_spearman),
        ("--max-verdict-changes", args.max_verdict_changes),
    )
    for flag, value in auto_flags:
        if (
            value is not None
            and args.int8_scope not in (Int8Scope.AUTO.value, Int8Scope.MIXED.value)
            and not (args.format == ExportFormat.OPENVINO.value and args.int8_scope is None)
        ):
            raise ExportError(f"{flag} sets the fidelity bound of --int8-scope auto (or mixed)")
    if args.int8_scope == Int8Scope.MIXED.value and args.format != ExportFormat.OPENVINO.value:
        raise ExportError(
            "--int8-scope mixed is NNCF's accuracy control, for --format openvino; for ONNX use "
            "auto, full or student"
        )
    if args.int8_headroom is not None and args.int8_headroom < 1:
        raise ExportError(
            f"--int8-headroom {args.int8_headroom:g}: expected a factor >= 1 (1: the ranges as calibrated)"
        )
    for flag, value in (
        ("--int8-headroom", args.int8_headroom),
        ("--int8-target", args.int8_target),
        ("--int8-scope", args.int8_scope),
        ("--calib-images", args.calib_images),
        ("--calib-method", args.calib_method),
    ):
        if value is not None and args.precision != "int8":
            raise ExportError(f"{flag} is for --precision int8")
    if args.engine is not None and args.int8_target == "cpu":
        raise ExportError(
            "--int8-target cpu makes a graph for ONNX Runtime on x86; TensorRT engines "
            "need --int8-target tensorrt (the default)"
        )
    if args.engine is None and any(
        v is not None for v in (args.workspace, args.timing_cache, args.opt_batch)
    ):
        raise ExportError("--workspace, --timing-cache and --opt-batch are for --engine")
    if args.engine is None and args.triton_repo is None and args.max_batch is not None:
        raise ExportError("--max-batch is for --engine or --triton-repo")
    if args.triton_repo is None and args.instances is not None:
        raise ExportError("--instances is for --triton-repo")
    if (
        _is_onnx(model)
        and args.engine is None
        and args.precision != "int8"
        and args.triton_repo is None
        and args.format == ExportFormat.ONNX.value
    ):
        raise ExportError(
            f"{model} is already ONNX: use --precision int8 --calib-dir DIR to quantize it, "
            f"or --engine to build a TensorRT plan (fp32/fp16 graphs come from the checkpoint)"
        )


def _check_format(args: argparse.Namespace) -> None:
    if args.format == ExportFormat.OPENVINO.value:
        if args.engine is not None or args.triton_repo is not None:
            raise ExportError(
                "--format openvino writes an OpenVINO IR; --engine and --triton-repo are for the ONNX format"
            )
        if args.precision == Precision.FP16.value:
            raise ExportError(
                "--format openvino takes --precision fp32, bf16 or int8 (OpenVINO on the CPU "
                "has no fp16 compute)"
            )
        if args.int8_target is not None:
            raise ExportError(
                "--int8-target chooses the Q/DQ flavour of an ONNX graph; an OpenVINO IR is "
                "quantized by NNCF for OpenVINO"
            )
        if args.output and Path(args.output).suffix.lower() != ".xml":
            raise ExportError(f"-o {args.output}: an OpenVINO IR is model.xml (+ model.bin beside it)")
    elif args.precision == InferencePrecision.BF16.value:
        raise ExportError(
            "--precision bf16 is for --format openvino (OpenVINO's bf16 inference on CPUs "
            "with AVX-512 BF16 or AMX)"
        )


def _export_checkpoint(args: argparse.Namespace, checkpoint: Path, out: Path, precision: str) -> Path:
    """Checkpoint -> verified ONNX (the only path that imports torch)."""
    from .onnx_export import export_onnx

    report = export_onnx(
        checkpoint,
        out,
        opset=args.opset,
        batch=args.batch,
        precision=precision,
        verify=not args.no_verify,
        keep_failed=args.keep_failed,
    )
    print(report.format())
    return out


def _max_images(args: argparse.Namespace) -> int:
    from .quantize import DEFAULT_MAX_IMAGES

    return args.calib_images if args.calib_images is not None else DEFAULT_MAX_IMAGES


def _check_int8_calibration(args: argparse.Namespace) -> None:
    """Fail on a missing, empty or unreadable --calib-dir before any export work."""
    from .quantize import int8_calibration_paths

    if args.calib_dir is None:
        raise ExportError(
            "--precision int8 needs --calib-dir DIR: a folder of good images to calibrate "
            "the int8 ranges (e.g. DATA/<category>/train/good)"
        )
    int8_calibration_paths(args.calib_dir, _max_images(args))


def _bound(args: argparse.Namespace) -> FidelityBound:
    from .scope_search import FidelityBound

    return FidelityBound(
        0.99 if args.min_spearman is None else args.min_spearman,
        0 if args.max_verdict_changes is None else args.max_verdict_changes,
    )


def _fidelity_images(args: argparse.Namespace, fp32_onnx: Path) -> FidelityImages:
    """The images the int8 fidelity is judged on."""
    from rd_edge.core.onnx_props import read_onnx_metadata

    from .scope_search import fidelity_images

    meta = read_onnx_metadata(fp32_onnx)
    return fidelity_images(Path(args.calib_dir), _max_images(args), args.fidelity_dir, meta)


def _search(
    args: argparse.Namespace,
    fp32_onnx: Path,
    out: Path,
    build,
    timed: bool,
    annotate,
    scopes: Optional[Sequence[str]] = None,
) -> None:
    """--int8-scope auto: every scope built by ``build(scope, path)``, the chosen one at ``out``."""
    from rd_edge.core.onnx_props import read_onnx_metadata

    from .scope_search import SEARCH_ORDER, search_scopes

    threshold = read_onnx_metadata(fp32_onnx).threshold
    search = search_scopes(
        fp32_onnx,
        build,
        out,
        _fidelity_images(args, fp32_onnx),
        threshold,
        _bound(args),
        timed=timed,
        annotate=annotate,
        scopes=scopes or SEARCH_ORDER,
    )
    print(search.format())


def _quantize(args: argparse.Namespace, fp32_onnx: Path, out: Path, target: str) -> Path:
    from .quantize import DEFAULT_SCOPE, annotate_onnx, quantize_int8

    if args.int8_scope == Int8Scope.AUTO.value:

        def build(scope: str, path: Path) -> None:
            print(
                quantize_int8(
                    fp32_onnx,
                    path,
                    args.calib_dir,
                    target=target,
                    max_images=_max_images(args),
                    calibration_method=args.calib_method,
                    scope=scope,
                    headroom=args.int8_headroom,
                ).format()
            )

        # TensorRT's speed cannot be measured here: the widest scope within the bound is kept
        _search(args, fp32_onnx, out, build, timed=target == Int8Target.CPU.value, annotate=annotate_onnx)
        _print_agreement(args, fp32_onnx, out)
        return out
    report = quantize_int8(
        fp32_onnx,
        out,
        args.calib_dir,
        target=target,
        max_images=_max_images(args),
        calibration_method=args.calib_method,
        scope=args.int8_scope or DEFAULT_SCOPE,
        headroom=args.int8_headroom,
    )
    print(report.format())
    _print_agreement(args, fp32_onnx, out)
    return out


def _print_agreement(args: argparse.Namespace, fp32_onnx: Path, int8_onnx: Path) -> None:
    """What int8 did to the scores, on the calibration images (a warning past the bound)."""
    from rd_edge.core.onnx_props import read_onnx_metadata

    from .accuracy import score_agreement
    from .quantize import int8_calibration_paths

    if read_onnx_metadata(fp32_onnx).threshold is None:
        print("note: no threshold in the model, so no fp32-vs-int8 verdict check; run rd-eval on both")
        return
    agreement = score_agreement(
        fp32_onnx, int8_onnx, int8_calibration_paths(args.calib_dir, _max_images(args))
    )
    print(agreement.format())
    if agreement.warning():
        print(f"warning: {agreement.warning()}", file=sys.stderr)


def _int8_onnx(args: argparse.Namespace, model: Path, out: Path, target: str) -> Path:
    """An int8 Q/DQ graph at ``out`` from a checkpoint (fp32 export to a temp file) or an fp32 ONNX."""
    _check_int8_calibration(args)
    if _is_onnx(model):
        return _quantize(args, model, out, target)
    with tempfile.TemporaryDirectory(prefix="rd_export_") as tmp:
        fp32 = _export_checkpoint(args, model, Path(tmp) / "fp32.onnx", "fp32")
        return _quantize(args, fp32, out, target)


def _onnx_main(args: argparse.Namespace, model: Path) -> Path:
    """The ONNX graph asked for; returns its path."""
    precision = args.precision or "fp32"
    if precision == "int8":
        out = Path(args.output) if args.output else model.with_name(f"{model.stem}_int8.onnx")
        return _int8_onnx(
            args, model, check_writable_file(out, "ONNX output"), args.int8_target or Int8Target.CPU.value
        )  # no engine build: the CPU flavour
    if _is_onnx(model) and args.precision is None:
        return model  # --triton-repo from an existing graph: nothing to export
    out = Path(args.output) if args.output else model.with_suffix(".onnx")
    return _export_checkpoint(args, model, check_writable_file(out, "ONNX output"), precision)


def _triton_main(args: argparse.Namespace, artifact: Path) -> None:
    """Write the Triton model repository for the .onnx graph or TensorRT plan just made."""
    from rd_edge.core.onnx_props import onnx_input_batch, read_onnx_metadata
    from rd_edge.core.sidecar import EngineSidecar
    from rd_edge.runtime import DEFAULT_MAX_BATCH, write_graph_repository

    engine = args.engine is not None
    if engine:  # the plan's real profile: Triton refuses a max_batch_size the engine cannot run
        sidecar = EngineSidecar.read(artifact)
        meta, max_batch = sidecar.metadata, sidecar.max_batch
        fixed: Optional[int] = sidecar.max_batch if sidecar.static_batch else None
    else:
        meta, max_batch = read_onnx_metadata(artifact), args.max_batch or DEFAULT_MAX_BATCH
        fixed = onnx_input_batch(artifact, str(meta.input.get("name", "image")))  # --batch N graphs
    # thresholds.json and the model name come from the user's graph, else from what was exported
    source = Path(args.model) if _is_onnx(Path(args.model)) else artifact
    folder = write_graph_repository(
        artifact,
        args.triton_repo,
        meta,
        "tensorrt" if engine else "onnxruntime",
        max_batch=max_batch,
        instances=args.instances or 1,
        source=source,
        fixed_batch=fixed,
    )
    print(f"Triton model repository: {folder} ({'tensorrt' if engine else 'onnxruntime'} backend)")


def _engine_main(args: argparse.Namespace, model: Path) -> Path:
    from rd_edge.core.onnx_props import read_onnx_metadata
    from rd_edge.runtime import DEFAULT_MAX_BATCH, build_engine, default_plan_path, require_tensorrt

    if _is_onnx(model):
        source_precision = read_onnx_metadata(model).precision  # MetadataError before anything else
    else:
        source_precision = "fp32"
    trt = require_tensorrt()  # fail before exporting or quantizing when TensorRT is missing
    # TensorRT 11 networks are strongly typed: fp16 comes from an fp16 graph, never a flag.
    typed = int(str(trt.__version__).split(".")[0]) >= 11
    precision = args.precision or source_precision
    plan = Path(args.engine) if args.engine else default_plan_path(model, precision, source_precision)
    check_writable_file(plan, "engine")  # before any export, quantization or build work
    converts = (precision == "int8" and source_precision != "int8") or (
        typed and (source_precision, precision) == ("fp32", "fp16")
    )
    if not _is_onnx(model) or converts:
        check_writable_file(Path(args.output) if args.output else plan.with_suffix(".onnx"), "ONNX output")
    onnx_path = _engine_onnx(args, model, plan, precision, source_precision, typed)
    report = build_engine(
        onnx_path,
        plan,
        precision=precision,
        max_batch=args.max_batch or DEFAULT_MAX_BATCH,
        workspace_mb=args.workspace,
        timing_cache=args.timing_cache,
        verbose=args.verbose,
        opt_batch=args.opt_batch,
    )
    print(report.format())
    return plan


def _engine_onnx(
    args: argparse.Namespace, model: Path, plan: Path, precision: str, source_precision: str, typed: bool
) -> Path:
    """The ONNX graph the engine is built from; written next to the plan when it has to be made.

    ``typed``: the TensorRT builds strongly typed networks (11+), so an fp16 engine from an fp32
    ONNX file needs the fp16 graph written first (rd_export.half)."""
    out = Path(args.output) if args.output else plan.with_suffix(".onnx")
    if precision == "int8" and source_precision != "int8":
        return _int8_onnx(args, model, out, "tensorrt")
    if args.calib_dir is not None:
        raise ExportError(
            f"{model} is already an int8 Q/DQ graph; drop --calib-dir (it was calibrated "
            f"when it was quantized)"
        )
    if _is_onnx(model) and typed and (source_precision, precision) == ("fp32", "fp16"):
        from .half import fp16_graph

        print(f"TensorRT 11 takes fp16 from the graph: wrote {fp16_graph(model, out)} from {model}")
        return out
    if _is_onnx(model):
        return model  # fp32 graph + FP16 flag (TensorRT < 11), or the graph's own precision
    # From a checkpoint: fp16 engines come from the fp16 graph (head kept float32 in the graph),
    # which TensorRT 11 requires and older versions build the same way.
    return _export_checkpoint(args, model, out, precision)


def _openvino_main(args: argparse.Namespace, model: Path) -> Path:
    """The OpenVINO IR asked for, made from the fp32 ONNX (exported first from a checkpoint)."""
    from .openvino_export import default_ir_path, export_ir, ov

    ov.load()  # fail before any export work when openvino is missing
    precision = args.precision or "fp32"
    out = check_writable_file(
        Path(args.output) if args.output else default_ir_path(model, precision), "IR output"
    )
    if precision == "int8":
        _check_int8_calibration(args)
    with tempfile.TemporaryDirectory(prefix="rd_export_") as tmp:
        onnx_path = (
            model if _is_onnx(model) else _export_checkpoint(args, model, Path(tmp) / "fp32.onnx", "fp32")
        )
        if precision == "int8":
            return _quantize_ir(args, onnx_path, out)
        print(export_ir(onnx_path, out, precision).format())
    return out


def _to_stderr(line: str) -> None:
    """A long step's estimate: on stderr, at once (stdout may be a pipe that buffers)."""
    print(line, file=sys.stderr, flush=True)


def _quantize_ir(args: argparse.Namespace, onnx_path: Path, out: Path) -> Path:
    from rd_edge.runtime import cpu_capabilities

    from .openvino_int8 import DEFAULT_OV_SCOPE, annotate_ir, quantize_ir, with_float_precision
    from .scope_search import base_scope, openvino_search_order

    scope = args.int8_scope or DEFAULT_OV_SCOPE
    accuracy = (
        _accuracy_target(args, onnx_path) if scope in (Int8Scope.AUTO.value, Int8Scope.MIXED.value) else None
    )

    def build(scope: str, path: Path) -> None:
        if scope != base_scope(scope):  # "SCOPE+bf16": SCOPE's IR, built before it in this folder
            with_float_precision(path.with_name(base_scope(scope) + path.suffix), path, "bf16")
            return
        report = quantize_ir(
            onnx_path,
            path,
            args.calib_dir,
            max_images=_max_images(args),
            scope=scope,
            accuracy=accuracy,
            headroom=args.int8_headroom,
            progress=_to_stderr,
        )
        print(report.format())

    if scope == Int8Scope.AUTO.value:
        order = openvino_search_order("BF16" in cpu_capabilities())
        _search(args, onnx_path, out, build, timed=True, annotate=annotate_ir, scopes=order)
        return out
    build(scope, out)
    return out


def _accuracy_target(args: argparse.Namespace, onnx_path: Path) -> AccuracyTarget:
    """What NNCF's accuracy control (scope mixed) must keep: fp32 scores of the fidelity images."""
    from rd_edge.core.onnx_props import read_onnx_metadata

    from .openvino_int8 import AccuracyTarget
    from .scope_search import scores_of

    fidelity = _fidelity_images(args, onnx_path)
    threshold = read_onnx_metadata(onnx_path).threshold
    return AccuracyTarget(fidelity, scores_of(onnx_path, fidelity.images), threshold, _bound(args))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        model = Path(args.model)
        _check_args(args, model)
        if args.format == ExportFormat.OPENVINO.value:
            _openvino_main(args, model)
            return 0
        artifact = _engine_main(args, model) if args.engine is not None else _onnx_main(args, model)
        if args.triton_repo is not None:
            _triton_main(args, artifact)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
