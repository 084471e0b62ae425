"""rd-export --format openvino --precision int8: NNCF post-training quantization of the IR.

Calibrated on good images (the same folder rule and preprocessing as the ONNX int8 path). The
anomaly-map head (``/head/``: cosine sums, resize, blur, max) always stays float; ``scope``
chooses the rest as for ONNX (:data:`rd_export.quantize.SCOPES`): ``full`` lets NNCF quantize
the whole teacher/OCBE/student (Conv, ConvTranspose, Add, MaxPool inputs, as OpenVINO's int8
kernels want them), ``student`` only OCBE's bottleneck stage and the student. ``mixed`` starts
from ``full`` and lets NNCF's accuracy control (``nncf.quantize_with_accuracy_control``) revert
the quantizers that cost the most fidelity to float, a group at a time, until the fidelity bound
(:class:`rd_export.scope_search.FidelityBound`, as one metric) holds on the fidelity images.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from rd_edge.core.choices import Int8Scope
from rd_edge.core.errors import ExportError
from rd_edge.core.ir_props import INT8_FLOAT_PRECISION_KEY, read_ir_metadata
from rd_edge.core.onnx_props import read_onnx_metadata
from rd_edge.core.optional import lazy_import

from .openvino_export import IrParity, check_ir, convert_onnx, ir_metadata, ov, save_ir, staged_ir
from .quantize import DEFAULT_MAX_IMAGES, SCOPES, int8_calibration_paths, load_int8_calibration_batch
from .scope_search import FidelityBound

PathLike = Union[str, Path]
nncf = lazy_import(
    "nncf",
    "OpenVINO int8 (rd-export --format openvino --precision int8)",
    "`pip install '.[openvino]'` (nncf)",
    ExportError,
)

# Accuracy-aware by default: full, then student, the fastest within the fidelity bound (scope_search).
DEFAULT_OV_SCOPE = Int8Scope.AUTO.value
HEAD_PREFIX = "/head/"


@dataclass(frozen=True)
class AccuracyTarget:
    """What scope ``mixed`` must keep: the fp32 model's scores of the fidelity images."""

    images: np.ndarray  # [N,3,H,W], preprocessed
    reference_scores: np.ndarray  # [N], the fp32 ONNX model's scores of ``images``
    threshold: Optional[float]  # verdicts are compared at it (None: Spearman only)
    bound: FidelityBound


@dataclass
class IrQuantizeReport:
    xml_path: Path
    scope: str
    calibration_images: int
    calibration_dir: Path
    fake_quantize: int  # FakeQuantize nodes NNCF inserted
    seconds: float
    parity: IrParity

    def format(self) -> str:
        return (
            f"wrote {self.xml_path} (OpenVINO IR, int8 by NNCF, scope {self.scope}, head float) in "
            f"{self.seconds:.1f} s: {self.fake_quantize} quantizers; calibrated on "
            f"{self.calibration_images} good images from {self.calibration_dir}\n  {self.parity.format()}"
        )


def ignored_scope(scope: str) -> Any:
    """NNCF IgnoredScope: every op outside ``scope``'s prefixes, the head included."""
    if scope not in SCOPES:
        raise ExportError(f"--int8-scope {scope!r}: expected one of {', '.join(SCOPES)}")
    inside = "|".join(re.escape(p) for p in SCOPES[scope])
    # NNCF matches patterns at the start of each op's name: everything not under the scope
    return nncf.load().IgnoredScope(patterns=[f"(?!{inside}).*"], validate=False)


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs one INFO line per op it skips and draws progress bars: keep rd-export's output short."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def quantize_model(model: Any, batches: List[Any], scope: str, subset_size: int) -> Any:
    """nncf.quantize on an ov.Model with the scope's ignored ops."""
    module = nncf.load()
    with _quiet_nncf():
        try:
            return module.quantize(
                model, module.Dataset(batches), subset_size=subset_size, ignored_scope=ignored_scope(scope)
            )
        except Exception as exc:  # NNCF raises its own and OpenVINO's exception types
            raise ExportError(f"NNCF quantization failed: {exc}") from exc


def _indexed_scores(compiled: Any, items: Sequence[Tuple[int, np.ndarray]]) -> Tuple[List[int], np.ndarray]:
    """Scores [n] of NNCF's validation items (index, [1,3,H,W]): the ranking runs on subsets."""
    indices = [index for index, _ in items]
    scores = np.array([float(np.asarray(compiled(image)["score"]).reshape(-1)[0]) for _, image in items])
    return indices, scores


def quantize_mixed(model: Any, batches: List[Any], target: AccuracyTarget, subset_size: int) -> Any:
    """nncf.quantize_with_accuracy_control from scope full: quantizers reverted to float until
    ``target.bound`` holds (NNCF runs every candidate in fp32, as rd-edge runs an int8 IR's float
    layers). When even all reverted it cannot, NNCF returns its best and the search judges it."""
    module = nncf.load()
    bound = target.bound

    def fidelity(compiled: Any, items: Sequence[Tuple[int, np.ndarray]]) -> Tuple[float, List[float]]:
        indices, scores = _indexed_scores(compiled, items)
        reference = target.reference_scores[indices]
        # per item: how far each score moved (NNCF ranks quantizer groups by it)
        return bound.metric(reference, scores, target.threshold), list(-np.abs(scores - reference))

    validation = module.Dataset(
        [(i, target.images[i : i + 1]) for i in range(len(target.images))], lambda item: item[1]
    )
    with _quiet_nncf():
        try:
            return module.quantize_with_accuracy_control(
                model,
                module.Dataset(batches),
                validation,
                fidelity,
                max_drop=1.0 - bound.min_spearman,  # fp32 scores the metric 1 (itself)
                drop_type=module.DropType.ABSOLUTE,
                subset_size=subset_size,
                ignored_scope=ignored_scope(Int8Scope.FULL.value),
            )
        except Exception as exc:  # NNCF raises its own and OpenVINO's exception types
            raise ExportError(f"NNCF accuracy-controlled quantization failed: {exc}") from exc


def _resave_with_extra(src_xml: Path, xml_out: Path, extra: Dict[str, object]) -> None:
    """The IR ``src_xml`` saved at ``xml_out`` with ``extra`` added to its metadata (staged, then
    renamed over it: OpenVINO maps the .bin it reads, and rewriting a mapped file in place
    crashes with SIGBUS)."""
    model = ov.load().Core().read_model(str(src_xml))
    meta = read_ir_metadata(src_xml)
    with staged_ir(xml_out) as tmp:
        save_ir(model, tmp, replace(meta, extra={**meta.extra, **extra}))


def annotate_ir(xml_path: Path, search: Dict[str, object]) -> None:
    """Record the scope search in the IR's metadata."""
    _resave_with_extra(xml_path, xml_path, {"int8_scope_search": search})


def with_float_precision(src_xml: Path, xml_out: Path, precision: str) -> None:
    """A copy of the int8 IR ``src_xml`` whose float layers run in ``precision`` (its metadata's
    ``inference_precision``, which the OpenVINO backend applies where the CPU has it)."""
    _resave_with_extra(src_xml, xml_out, {INT8_FLOAT_PRECISION_KEY: precision})


def quantize_ir(
    onnx_path: PathLike,
    xml_out: PathLike,
    calib_dir: PathLike,
    max_images: int = DEFAULT_MAX_IMAGES,
    scope: str = Int8Scope.FULL.value,
    accuracy: Optional[AccuracyTarget] = None,
) -> IrQuantizeReport:
    """fp32 rd-export ONNX -> int8 IR at ``xml_out``, calibrated on the good images of ``calib_dir``;
    scope ``mixed`` needs ``accuracy``, what the accuracy control must keep."""
    if scope == Int8Scope.MIXED.value and accuracy is None:
        raise ExportError("--int8-scope mixed needs fidelity images and a bound (rd-export computes them)")
    t0 = time.perf_counter()
    onnx_path, xml_out = Path(onnx_path), Path(xml_out)
    meta = read_onnx_metadata(onnx_path)
    paths = int8_calibration_paths(calib_dir, max_images)
    images = load_int8_calibration_batch(paths, meta)  # [N,3,H,W]
    model = convert_onnx(onnx_path)
    batches = [images[i : i + 1] for i in range(len(images))]
    if accuracy is not None and scope == Int8Scope.MIXED.value:
        quantized = quantize_mixed(model, batches, accuracy, len(images))
    else:
        quantized = quantize_model(model, batches, scope, len(images))
    count = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ordered_ops())
    qmeta = ir_metadata(
        meta,
        "int8",
        int8_target="openvino",
        int8_scope=scope,
        calibration_images=len(paths),
        quantizer=f"nncf {nncf.load().__version__}",
    )
    with staged_ir(xml_out) as tmp:
        save_ir(quantized, tmp, qmeta)
        parity = check_ir(tmp, onnx_path, images[:4], "calibration images", "fp32")
    return IrQuantizeReport(
        xml_out, scope, len(paths), Path(calib_dir), count, time.perf_counter() - t0, parity
    )
