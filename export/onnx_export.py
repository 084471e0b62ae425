"""rd-export's core: checkpoint -> fused, cleaned, verified ONNX graph with metadata."""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import onnx
import torch
from torch import Tensor, nn

from rd_edge.checkpoint import build_model, read_checkpoint
from rd_edge.core.errors import ExportError, VerificationError
from rd_edge.core.files import atomic_path, check_writable_file, remove_stale_temps, sha256_file
from rd_edge.core.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from rd_edge.core.thresholds import CALIBRATION_KEY, calibration_summary
from rd_edge.core.tiling import Tiling
from rd_edge.model import RDInference

from . import __version__
from .fold import fold_batchnorm
from .graph import check_clean, full_check, infer_shapes, op_histogram, set_metadata, simplify
from .verify import VerificationReport, check_images, verify_export

# Opset 17: parsed by TensorRT 8.5 (JetPack 5.1) and newer, and loaded by OpenCV DNN 4.6. The graph
# avoids the operators whose form changed in later opsets (Reduce* axes as inputs).
DEFAULT_OPSET = 17
SUPPORTED_OPSETS = range(11, 18)


@dataclass
class ExportReport:
    onnx_path: Path
    precision: str
    opset: int
    batch: str
    seconds: float
    ops_before_simplify: Dict[str, int]
    ops: Dict[str, int]
    verification: Optional[VerificationReport] = None
    metadata: Optional[ModelMetadata] = None

    def format(self) -> str:
        before, after = sum(self.ops_before_simplify.values()), sum(self.ops.values())
        lines = [
            f"wrote {self.onnx_path} ({self.precision}, opset {self.opset}, batch {self.batch}) "
            f"in {self.seconds:.1f} s",
            f"nodes: {before} exported -> {after} after onnxslim; operators: "
            + ", ".join(f"{k} {v}" for k, v in self.ops.items()),
        ]
        if self.verification is not None:
            lines.append(self.verification.format())
        return "\n".join(lines)


class HalfPrecisionRD(nn.Module):
    """fp16 teacher/OCBE/student between float32 input and output.

    The normalization and the anomaly-map reduction stay float32: the cosine sums and the blur
    lose too much in fp16, and they cost little next to the convolutions.
    """

    def __init__(self, model: RDInference) -> None:
        super().__init__()
        self.normalize = model.normalize
        self.rd = model.rd.half()
        self.head = model.head

    def forward(self, image: Tensor):
        teacher, student = self.rd(self.normalize(image).half())
        return self.head([t.float() for t in teacher], [s.float() for s in student])


def build_metadata(
    data: Dict, model: RDInference, checkpoint: Path, precision: str, opset: int
) -> ModelMetadata:
    cfg = model.config
    return ModelMetadata(
        backbone=cfg.backbone,
        image_size=list(cfg.image_size),
        threshold=data.get("threshold"),
        score_stats=data.get("score_stats"),
        checkpoint_sha256=sha256_file(checkpoint),
        exporter_version=__version__,
        precision=precision,
        blur_sigma=cfg.blur_sigma,
        mean=list(cfg.mean),
        std=list(cfg.std),
        opset=opset,
        tiling=Tiling.from_dict(data["tiling"], str(checkpoint)).to_dict() if data.get("tiling") else None,
        pixel_threshold=data.get("pixel_threshold"),
        teacher=data.get("teacher"),
        resize=cfg.resize,
        # rd-calibrate chose the checkpoint's threshold: rd-infer's header names it, not rd-train's
        extra={CALIBRATION_KEY: calibration_summary(data["calibration"])} if data.get("calibration") else {},
    )


def _torch_export(module: nn.Module, example: Tensor, path: Path, opset: int, dynamic: bool) -> None:
    axes = {name: {0: "N"} for name in (INPUT_NAME, *OUTPUT_NAMES)} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        # The TorchScript exporter gives a plain opset-17 graph that TensorRT 8.5 and OpenCV 4.6
        # load; the dynamo exporter emits newer operator forms they reject.
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def _validate_args(opset: int, batch: Union[str, int], precision: str) -> int:
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(
            f"--opset {opset} not supported; use {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1} "
            f"(TensorRT 8.5 parses up to 17)"
        )
    if precision not in ("fp32", "fp16"):
        raise ExportError(
            f"--precision {precision!r}: expected fp32 or fp16 here (int8 is a quantization step)"
        )
    if batch == "dynamic":
        return 1
    try:
        n = int(batch)
    except (TypeError, ValueError):
        raise ExportError(f"--batch must be 'dynamic' or a positive integer, got {batch!r}") from None
    if n < 1:
        raise ExportError(f"--batch must be positive, got {n}")
    return n


def failed_path(out: Path) -> Path:
    """Where --keep-failed puts a graph that failed verification: <stem>.failed.onnx."""
    return out.with_name(f"{out.stem}.failed{out.suffix or '.onnx'}")


def export_onnx(
    checkpoint: Union[str, Path],
    out: Optional[Union[str, Path]] = None,
    *,
    opset: int = DEFAULT_OPSET,
    batch: Union[str, int] = "dynamic",
    precision: str = "fp32",
    verify: bool = True,
    keep_failed: bool = False,
) -> ExportReport:
    """Fuse normalization, teacher, OCBE, student and the anomaly-map reduction into one ONNX file.

    Atomic: the graph is written and verified beside ``out`` under a temporary name and renamed
    onto ``out`` only once verified, so a failed verification, Ctrl-C or a kill never leaves a
    bad graph at ``out`` nor destroys the model that was there. ``keep_failed`` keeps a graph
    that failed as <stem>.failed.onnx.
    """
    t0 = time.perf_counter()
    checkpoint = Path(checkpoint)
    out = check_writable_file(out if out is not None else checkpoint.with_suffix(".onnx"), "ONNX output")
    remove_stale_temps(out)  # graphs of an export that was killed (kill -9) before its rename
    example_batch = _validate_args(opset, batch, precision)
    data = read_checkpoint(checkpoint)
    model = build_model(data)
    reference = copy.deepcopy(model)  # unfolded fp32 module: what load_checkpoint gives users
    fold_batchnorm(model)
    module = HalfPrecisionRD(model) if precision == "fp16" else model
    h, w = model.config.image_size
    with atomic_path(out, suffix=".onnx", keep_failed=failed_path(out) if keep_failed else None) as tmp:
        _torch_export(module, torch.rand(example_batch, 3, h, w), tmp, opset, dynamic=batch == "dynamic")
        graph = onnx.load(str(tmp))
        ops_before = op_histogram(graph)
        graph = infer_shapes(simplify(graph))
        check_clean(graph)
        metadata = build_metadata(data, model, checkpoint, precision, opset)
        set_metadata(graph, metadata)
        full_check(graph)
        onnx.save(graph, str(tmp))
        report = ExportReport(
            out, precision, opset, str(batch), 0.0, ops_before, op_histogram(graph), metadata=metadata
        )
        if verify:
            n_check = example_batch if batch != "dynamic" else 4
            images, source = check_images(model.config, data["training"].get("data_dir"), n=n_check)
            report.verification = _verify(tmp, out, reference, images, source, precision, keep_failed)
    report.seconds = time.perf_counter() - t0
    return report


def _verify(
    tmp: Path, out: Path, reference: RDInference, images, source: str, precision: str, keep_failed: bool
) -> VerificationReport:
    """verify_export on the temporary graph; a failure says that ``out`` was left as it was."""
    try:
        return verify_export(tmp, reference, images, source, precision, with_opencv=precision == "fp32")
    except VerificationError as exc:
        kept = (
            f"the failed graph is kept as {failed_path(out)}"
            if keep_failed
            else "keep the failed graph for inspection with --keep-failed"
        )
        raise VerificationError(
            f"{exc}\n{out} was not written (an existing file there is untouched); {kept}"
        ) from exc
