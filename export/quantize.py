"""INT8 as explicit Q/DQ: static quantization of the fused graph's convolutions.

Calibrated on good images with ONNX Runtime's ``quantize_static`` (QDQ format). Only
convolutions of teacher, OCBE and student (``Conv``/``ConvTranspose`` under ``/rd/``) are
quantized, those of the chosen scope (:data:`SCOPES`); the anomaly-map reduction under
``/head/`` (cosine sums as 1x1 ones-kernel convs, resize, blur convs, max pool) stays float,
because cosine distances near 0 and the blurred map's maximum lose too much at 8 bits and cost
little next to the backbone.

Two flavours, because the targets disagree (see :data:`RECIPES`):

- ``tensorrt``: symmetric int8 activations (zero point 0) and per-channel symmetric int8
  weights, the only form TensorRT's explicit quantization accepts; used for engines.
- ``cpu``: unsigned 8-bit activations with int8 weights, what ONNX Runtime's x86 kernels run
  fastest (symmetric int8 activations measured no faster than fp32 there). The 2x2 stride-2
  ConvTranspose layers are first rewritten as 1x1 Conv + DepthToSpace (:mod:`.rewrite`, exact in
  fp32) so that they are quantized too.

onnxruntime is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import numpy_helper

from rd_edge.core.choices import CalibrationMethod, Int8Scope, Int8Target, values
from rd_edge.core.errors import ExportError, RdEdgeError
from rd_edge.core.files import atomic_path, check_writable_file
from rd_edge.core.metadata import INPUT_NAME, ModelMetadata
from rd_edge.core.onnx_props import read_onnx_metadata
from rd_edge.core.preprocess import ModelInput

from .graph import full_check, read_metadata, set_metadata
from .rewrite import conv_transpose_as_conv

PathLike = Union[str, Path]

INT8_TARGETS = tuple(values(Int8Target))
CALIBRATION_METHODS = tuple(values(CalibrationMethod))
DEFAULT_MAX_IMAGES = 64
QUANTIZED_OPS = ("Conv", "ConvTranspose")
# Node-name prefixes of teacher, OCBE and student in the fused graph; /head/ stays float.
BACKBONE_PREFIXES = ("/rd/teacher/", "/rd/ocbe/", "/rd/student/")
# Which convolutions each --int8-scope quantizes. "student": the one-class bottleneck stage
# (OCBE's bn_layer) and the student decoder, about half the model's FLOPs. The teacher and
# OCBE's fusion convs that read teacher features stay float: on the demo data their int8 weights
# alone (with 16-bit activations) cost 0.02-0.03 image AUROC, while quantizing this scope costs
# under 0.01 (measurements in docs/tensorrt_int8.md).
SCOPES: Dict[str, Tuple[str, ...]] = {
    Int8Scope.STUDENT.value: ("/rd/ocbe/bn_layer/", "/rd/student/"),
    Int8Scope.FULL.value: BACKBONE_PREFIXES,
}
DEFAULT_SCOPE = Int8Scope.STUDENT.value
# Activation ranges calibrated on good images are widened this many times, so that int8 does not
# clip what a defect drives past them (both ONNX flavours' RECIPES; OpenVINO's default without
# fidelity images, openvino_int8)
DEFAULT_HEADROOM = 2.0
_INT8_CALIBRATION_BATCH = 8  # images per calibration run: fewer Python round trips, bounded memory


@dataclass(frozen=True)
class Int8Recipe:
    """The quantize_static settings of one flavour (the measurements behind them: docs/tensorrt_int8.md)."""

    target: str
    activation_type: str  # "QInt8" | "QUInt8" (onnxruntime.quantization.QuantType names)
    activation_symmetric: bool
    per_channel: bool
    reduce_range: bool  # 7-bit weights: only for x86 CPUs without VNNI
    quantize_conv_transpose: bool
    calibration_method: str  # one of CALIBRATION_METHODS
    weight_qdq_pair: bool  # float weights behind Q->DQ (TensorRT quantizes them itself)
    float_bias: bool  # keep biases float instead of int32 DequantizeLinear
    conv_transpose_axis: Optional[int] = None  # per-channel axis of ConvTranspose weights (None: ORT's, 1)
    # 2x2 stride-2 ConvTranspose rewritten as 1x1 Conv + DepthToSpace first (rewrite.py), so it is
    # quantized like any Conv where the runtime has no int8 ConvTranspose kernel
    conv_transpose_as_conv: bool = False
    percentile: float = 99.999  # only for calibration_method "percentile"
    # activation ranges widened this many times after calibration (widen_activation_scales)
    headroom: float = 1.0


RECIPES: Dict[str, Int8Recipe] = {
    # TensorRT explicit quantization: zero points 0 everywhere, per-channel weights. Float weights
    # behind Q->DQ is the form TensorRT has parsed since 8.0 (pytorch-quantization exports it);
    # it folds them at build. Biases stay float: TensorRT's DequantizeLinear takes int8, not
    # int32. ConvTranspose weights [C_in, C_out, k, k] per *input* channel (axis 0): TensorRT's
    # deconvolution kernels support only that axis (NVIDIA/TensorRT#2380, #1694); ORT's default
    # axis 1 builds wrong results there.
    # Ranges as the cpu flavour's (below): with the extremes over all images, the trained
    # wide_resnet50_2 turned around (Spearman -0.32 student scope, -0.25 full; 38 of 42 verdicts
    # changed), now 0.888 and 0.891 with none; resnet18 256 px student 0.9971 -> 0.9966, full
    # 0.9724 -> 0.9912; demo model 0.9977 -> 0.9964, 0.9679 -> 0.9833 (the Q/DQ graph run by
    # ONNX Runtime: TensorRT takes the same scales; its own int8 is not measured here).
    "tensorrt": Int8Recipe(
        "tensorrt",
        "QInt8",
        activation_symmetric=True,
        per_channel=True,
        reduce_range=False,
        quantize_conv_transpose=True,
        calibration_method="mean-minmax",
        weight_qdq_pair=True,
        float_bias=True,
        conv_transpose_axis=0,
        headroom=DEFAULT_HEADROOM,
    ),
    # ONNX Runtime on x86: u8 activations (asymmetric) x s8 weights run as QLinearConv; s8
    # activations measured no faster than fp32. Per-tensor weights: per-channel was 3-5% slower.
    # No reduce_range: VNNI CPUs do not saturate, and 7-bit weights lost accuracy. ConvTranspose
    # stays float: ORT has no quantized ConvTranspose kernel, so quantizing it only adds
    # DequantizeLinear work (and error). Measurements: docs/tensorrt_int8.md.
    # The student's ConvTranspose layers become 1x1 Conv + DepthToSpace (exact in fp32) and are
    # quantized as Conv: as float ConvTranspose they took 12-17 % of the int8 graph's time for ~5 %
    # of its MACs (issue 26).
    # Ranges: the mean of each calibration image's extremes, widened x2, as OpenVINO's int8 does
    # (openvino_int8.py): a few good images that drive an activation far out (trained
    # wide_resnet50_2: student layer1 to -90..123 where the median image stays in -1.9..2.2) no
    # longer set its range, and defects, which go past the good images', are not clipped. Full
    # scope, Spearman on the 42 demo test images, extremes over all images -> mean x2: resnet18
    # 256 px 0.9789 -> 0.9921, demo model 0.9327 -> 0.9767, wide_resnet50_2 -0.23 -> 0.9716
    # (student scope: 0.9984 -> 0.9974, 0.9982 -> 0.9981, -0.32 -> 0.9778).
    "cpu": Int8Recipe(
        "cpu",
        "QUInt8",
        activation_symmetric=False,
        per_channel=False,
        reduce_range=False,
        quantize_conv_transpose=False,
        calibration_method="mean-minmax",
        weight_qdq_pair=False,
        float_bias=False,
        conv_transpose_as_conv=True,
        headroom=DEFAULT_HEADROOM,
    ),
}


@dataclass
class QuantizeReport:
    """What quantize_int8 wrote and how it was calibrated."""

    onnx_path: Path
    target: str
    scope: str
    calibration_images: int
    calibration_dir: Path
    calibration_method: str
    quantized_nodes: int
    float_convs: int  # Conv/ConvTranspose left float (the head's, and those outside the scope)
    seconds: float
    metadata: Optional[ModelMetadata] = None
    headroom: float = 1.0  # activation ranges widened by this factor after calibration

    def format(self) -> str:
        return (
            f"wrote {self.onnx_path} (int8 Q/DQ for {self.target}, scope {self.scope}) in "
            f"{self.seconds:.1f} s: {self.quantized_nodes} convolutions quantized, {self.float_convs} "
            f"kept float (anomaly-map head{', teacher, MFF' if self.scope == 'student' else ''}); "
            f"calibrated on {self.calibration_images} good images from {self.calibration_dir} "
            f"({self.calibration_method}, activation ranges x{self.headroom:g})"
        )


# --- int8 calibration images (ranges of the activations; not the anomaly thresholds) ----------


def int8_calibration_paths(calib_dir: PathLike, max_images: int = DEFAULT_MAX_IMAGES) -> List[Path]:
    """Good images for int8 calibration: ``DIR/train/good`` of a category folder, else all of ``DIR``.

    At most ``max_images``, evenly spaced over the sorted list so the subset is deterministic
    and spans the folder. ExportError when the folder is missing or holds no image.
    """
    from rd_edge.data import IMAGE_EXTENSIONS, list_images

    if max_images < 1:
        raise ExportError(f"max_images must be >= 1, got {max_images}")
    root = Path(calib_dir)
    if not root.is_dir():
        found = "a file" if root.exists() else "no such folder"
        raise ExportError(
            f"--calib-dir {root}: expected a folder of good images (or a category "
            f"folder with train/good), found {found}"
        )
    # A category folder also holds test/ defects, which must not calibrate the ranges.
    folder = root / "train" / "good" if (root / "train" / "good").is_dir() else root
    try:
        paths = list_images(folder)
    except (RdEdgeError, OSError) as exc:
        raise ExportError(f"--calib-dir {folder}: cannot list images ({exc})") from exc
    if not paths:
        raise ExportError(
            f"--calib-dir {folder}: expected good images ({', '.join(IMAGE_EXTENSIONS)}), "
            f"found none; point it at the training images, e.g. DATA/<category>/train/good"
        )
    if len(paths) > max_images:
        picks = np.linspace(0, len(paths) - 1, max_images).round().astype(int)
        paths = [paths[i] for i in sorted(set(picks.tolist()))]
    return paths


def load_int8_calibration_batch(paths: Sequence[Path], model: ModelInput) -> np.ndarray:
    """[N,3,H,W] float32, preprocessed exactly as the runtime does: ``model``'s size and resize rule."""
    from rd_edge.core.scoring import load_batch

    images = []
    for path in paths:  # one by one, so the error names the image
        try:
            images.append(load_batch([path], model))
        except RdEdgeError as exc:
            raise ExportError(
                f"int8 calibration image {path} is unreadable ({exc}); remove it from "
                f"--calib-dir or replace it"
            ) from exc
    return np.concatenate(images)


def _batches(paths: Sequence[Path], model: ModelInput, batch: int) -> Iterator[np.ndarray]:
    for i in range(0, len(paths), batch):
        yield load_int8_calibration_batch(paths[i : i + batch], model)


def make_reader(paths: Sequence[Path], model: ModelInput, batch: int) -> Any:
    """An onnxruntime CalibrationDataReader over the images (class built lazily: ORT import)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _ImageReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = _batches(paths, model, batch)

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            images = next(self._it, None)
            return None if images is None else {INPUT_NAME: images}

        def rewind(self) -> None:
            self._it = _batches(paths, model, batch)

    return _ImageReader()


# --- graph inspection -------------------------------------------------------------------------


def backbone_convs(
    model: onnx.ModelProto, scope: str = "full", with_conv_transpose: bool = True
) -> List[str]:
    """Names of the convolutions ``scope`` quantizes (see SCOPES): the nodes to quantize."""
    if scope not in SCOPES:
        raise ExportError(f"--int8-scope {scope!r}: expected one of {', '.join(SCOPES)}")
    ops = QUANTIZED_OPS if with_conv_transpose else ("Conv",)
    return [n.name for n in model.graph.node if n.op_type in ops and n.name.startswith(SCOPES[scope])]


def _static_batch(model: onnx.ModelProto) -> Optional[int]:
    """The graph's fixed batch size, or None when the batch axis is dynamic."""
    for inp in model.graph.input:
        if inp.name == INPUT_NAME:
            dim = inp.type.tensor_type.shape.dim[0]
            return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
    raise ExportError(f"the graph has no input {INPUT_NAME!r}; expected an rd-export ONNX model")


def _check_source(model: onnx.ModelProto, path: Path) -> ModelMetadata:
    """The rd_edge metadata of a float32 rd-export graph; ExportError otherwise."""
    meta = read_metadata(model, source=str(path))  # MetadataError names rd-export
    if meta.precision != "fp32":
        raise ExportError(
            f"{path} is a {meta.precision} graph; int8 quantization starts from the fp32 "
            f"export: `rd-export model.pt -o model.onnx` (default --precision fp32)"
        )
    if not backbone_convs(model):
        raise ExportError(
            f"{path} has no convolutions under {', '.join(BACKBONE_PREFIXES)}; expected "
            f"the fused graph written by this rd-export"
        )
    return meta


def _fit_batch(paths: List[Path], static: Optional[int], per_run: int, source: Path):
    """(paths, batch): a fixed-batch graph takes whole batches of exactly its size."""
    if static is None:
        return paths, min(per_run, len(paths))
    if len(paths) < static:
        raise ExportError(
            f"{source} has a fixed batch of {static} but --calib-dir holds {len(paths)} "
            f"images; add images or export with --batch dynamic"
        )
    return paths[: len(paths) - len(paths) % static], static


# --- quantization -----------------------------------------------------------------------------


def _conv_transpose_weights(model: onnx.ModelProto, nodes: List[str]) -> List[str]:
    chosen = set(nodes)
    return [n.input[1] for n in model.graph.node if n.op_type == "ConvTranspose" and n.name in chosen]


def _quantize_kwargs(recipe: Int8Recipe, model: onnx.ModelProto, nodes: List[str]) -> Dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "mean-minmax": CalibrationMethod.MinMax,  # with CalibMovingAverage, below
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    extra: Dict[str, Any] = {
        "ActivationSymmetric": recipe.activation_symmetric,
        "WeightSymmetric": True,
        "AddQDQPairToWeight": recipe.weight_qdq_pair,
        # TensorRT keeps biases float (an int32 DequantizeLinear does not parse); ORT's
        # QLinearConv wants int32 biases.
        "QuantizeBias": not recipe.float_bias,
        # That adjustment serves int32 biases only, and assumes weight axis = bias axis (not so
        # for ConvTranspose on axis 0).
        "QDQDisableWeightAdjustForInt32Bias": recipe.float_bias,
    }
    if recipe.calibration_method == "percentile":
        extra["CalibPercentile"] = recipe.percentile
    if recipe.calibration_method == "mean-minmax":
        # ORT's MinMax calibrator then averages each calibration run's extremes (one image a run)
        extra["CalibMovingAverage"] = True
    if recipe.activation_symmetric:
        # Percentile/Entropy ranges are otherwise asymmetric; TensorRT needs symmetric ones.
        extra["CalibTensorRangeSymmetric"] = True
    if recipe.per_channel and recipe.conv_transpose_axis is not None:
        # QDQConv does not consult QDQOpTypePerChannelSupportToAxis; per-tensor overrides do apply.
        extra["TensorQuantOverrides"] = {
            w: [{"axis": recipe.conv_transpose_axis}] for w in _conv_transpose_weights(model, nodes)
        }
    return dict(
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OPS),
        nodes_to_quantize=nodes,
        per_channel=recipe.per_channel,
        reduce_range=recipe.reduce_range,
        activation_type=getattr(QuantType, recipe.activation_type),
        weight_type=QuantType.QInt8,
        calibrate_method=methods[recipe.calibration_method],
        extra_options=extra,
    )


class _DropPreprocessAdvice(logging.Filter):
    """ORT advises quant_pre_process on every call; the exported graph is already shape-inferred
    and constant-folded, and pre-processing measured no faster here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """Silence ORT's pre-processing advice and the histogram calibrators' progress prints."""
    advice = _DropPreprocessAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(advice)


def resolve_recipe(target: str, calibration_method: Optional[str] = None, **overrides: Any) -> Int8Recipe:
    """The recipe of ``target``, with an optional calibration method and field overrides."""
    if target not in RECIPES:
        raise ExportError(f"--int8-target {target!r}: expected one of {', '.join(INT8_TARGETS)}")
    recipe = RECIPES[target]
    if calibration_method is not None:
        if calibration_method not in CALIBRATION_METHODS:
            raise ExportError(
                f"calibration method {calibration_method!r}: expected one of {', '.join(CALIBRATION_METHODS)}"
            )
        recipe = replace(recipe, calibration_method=calibration_method)
    return replace(recipe, **overrides) if overrides else recipe


def _import_quantization() -> None:
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"int8 quantization needs onnxruntime: `pip install '.[cpu]'` ({exc})") from exc


def _run_quantize_static(
    onnx_in: Path, model: onnx.ModelProto, recipe: Int8Recipe, nodes: List[str], reader: Any
) -> onnx.ModelProto:
    """quantize_static into a scratch file (so a failure leaves no half-written output)."""
    from onnxruntime.quantization import quantize_static

    with tempfile.TemporaryDirectory(prefix="rd_int8_") as tmp:
        tmp_out = Path(tmp) / "int8.onnx"
        try:
            with _quiet_ort():
                quantize_static(str(onnx_in), str(tmp_out), reader, **_quantize_kwargs(recipe, model, nodes))
        except RdEdgeError:
            raise  # e.g. an unreadable calibration image, raised inside the reader
        except Exception as exc:  # ORT raises plain ValueError/RuntimeError/onnx errors
            raise ExportError(f"onnxruntime quantize_static failed on {onnx_in}: {exc}") from exc
        return onnx.load(str(tmp_out))


def quantize_int8(
    onnx_in: PathLike,
    onnx_out: PathLike,
    calib_dir: PathLike,
    target: str = "tensorrt",
    max_images: int = DEFAULT_MAX_IMAGES,
    calibration_method: Optional[str] = None,
    scope: str = DEFAULT_SCOPE,
    recipe: Optional[Int8Recipe] = None,
    headroom: Optional[float] = None,
) -> QuantizeReport:
    """Write a Q/DQ int8 copy of an fp32 rd-export graph, calibrated on good images.

    ``target`` picks the flavour ("tensorrt" or "cpu", see RECIPES); ``recipe`` replaces it
    entirely (measurements). ``scope`` picks the convolutions (see SCOPES). ``headroom``
    replaces the flavour's activation-range factor. Raises ExportError for an empty or
    unreadable calibration folder, MetadataError for an ONNX file without rd_edge metadata.
    """
    t0 = time.perf_counter()
    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    recipe = recipe or resolve_recipe(target, calibration_method)
    if headroom is not None:
        recipe = replace(recipe, headroom=headroom)
    if scope not in SCOPES:
        raise ExportError(f"--int8-scope {scope!r}: expected one of {', '.join(SCOPES)}")
    if not onnx_in.is_file():
        raise ExportError(f"cannot quantize {onnx_in}: no such file; expected an fp32 ONNX from rd-export")
    check_writable_file(onnx_out, "int8 ONNX output")
    _import_quantization()
    read_onnx_metadata(onnx_in)  # MetadataError for a random file, before onnx parses it
    model = _load_onnx(onnx_in)
    meta = _check_source(model, onnx_in)
    paths = int8_calibration_paths(calib_dir, max_images)
    # ORT's histogram calibrators (percentile, entropy) stack per-run tensors and fail on batches;
    # mean-minmax averages per run, which is per image only with one image a run.
    per_run = 1 if recipe.calibration_method != "minmax" else _INT8_CALIBRATION_BATCH
    paths, batch = _fit_batch(paths, _static_batch(model), per_run, onnx_in)

    with tempfile.TemporaryDirectory(prefix="rd_int8_src_") as tmp:
        source = onnx_in
        if recipe.conv_transpose_as_conv and conv_transpose_as_conv(model):
            source = Path(tmp) / "rewritten.onnx"
            onnx.save(model, str(source))
        nodes = backbone_convs(model, scope, recipe.quantize_conv_transpose)
        quantized = _run_quantize_static(source, model, recipe, nodes, make_reader(paths, meta, batch))
    widen_activation_scales(quantized, recipe.headroom)
    if recipe.target == "tensorrt":
        check_tensorrt_qdq(quantized, recipe.conv_transpose_axis)
    qmeta = replace(
        meta,
        precision="int8",
        extra={
            **meta.extra,
            "int8_target": recipe.target,
            "calibration_images": len(paths),
            "calibration_method": recipe.calibration_method,
            "int8_scope": scope,
            "per_channel_weights": recipe.per_channel,
            "activations": "int8 symmetric" if recipe.activation_symmetric else "uint8 asymmetric",
            "int8_headroom": recipe.headroom,
        },
    )
    set_metadata(quantized, qmeta)
    full_check(quantized)
    with atomic_path(onnx_out, suffix=".onnx") as tmp:  # a kill never leaves half a graph at onnx_out
        onnx.save(quantized, str(tmp))
    counts = quantization_summary(quantized)
    return QuantizeReport(
        onnx_out,
        recipe.target,
        scope,
        len(paths),
        Path(calib_dir),
        recipe.calibration_method,
        counts["quantized_convs"],
        counts["float_convs"],
        time.perf_counter() - t0,
        qmeta,
        recipe.headroom,
    )


def widen_activation_scales(model: onnx.ModelProto, headroom: float) -> int:
    """Widen every activation's quantization range in the Q/DQ ``model`` ``headroom`` times (in
    place): its scale x ``headroom`` with the same zero point, so both ends of the range scale.
    Weights keep theirs; an int32 bias is requantized to its convolution's new input scale x
    weight scale (the scale QLinearConv applies it at). Returns how many activations."""
    if headroom == 1.0:
        return 0
    inits = {t.name: t for t in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    quantized = {q.output[0] for q in quantizers}
    # each activation's Q and the DQs reading it (ORT shares one scale initializer; a set scales it once)
    activation_scales = {q.input[1] for q in quantizers} | {
        n.input[1] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in quantized
    }
    for name in activation_scales:
        _set_initializer(inits[name], numpy_helper.to_array(inits[name]) * np.float32(headroom))
    for conv in model.graph.node:
        if conv.op_type in ("Conv", "ConvTranspose") and len(conv.input) > 2:
            _requantize_bias(inits, producers, conv)
    return len(quantizers)


def _requantize_bias(inits: Dict[str, Any], producers: Dict[str, Any], conv: Any) -> None:
    """An int32 bias DequantizeLinear of ``conv``, re-expressed at input scale x weight scale."""
    bias_dq = producers.get(conv.input[2])
    if bias_dq is None or bias_dq.op_type != "DequantizeLinear" or bias_dq.input[0] not in inits:
        return  # a float bias: nothing to requantize
    quantized = numpy_helper.to_array(inits[bias_dq.input[0]])
    if quantized.dtype != np.int32:
        return
    x_scale, w_scale = (numpy_helper.to_array(inits[producers[t].input[1]]) for t in conv.input[:2])
    bias = quantized.astype(np.float64) * numpy_helper.to_array(inits[bias_dq.input[1]])
    scale = (x_scale * w_scale).astype(np.float32)
    _set_initializer(inits[bias_dq.input[1]], scale)
    _set_initializer(inits[bias_dq.input[0]], np.round(bias / scale).astype(np.int32))


def _set_initializer(tensor: Any, value: np.ndarray) -> None:
    tensor.CopyFrom(numpy_helper.from_array(value.astype(numpy_helper.to_array(tensor).dtype), tensor.name))


def annotate_onnx(onnx_path: Path, search: Dict[str, Any]) -> None:
    """Record the int8 scope search in the graph's metadata (rewritten in place)."""
    model = onnx.load(str(onnx_path))
    meta = read_metadata(model, source=str(onnx_path))
    set_metadata(model, replace(meta, extra={**meta.extra, "int8_scope_search": search}))
    onnx.save(model, str(onnx_path))


def _load_onnx(path: Path) -> onnx.ModelProto:
    """onnx.load with a clear error for a file that is not an ONNX model."""
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, onnx's own errors
        raise ExportError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc}); expected "
            f"an fp32 graph written by rd-export"
        ) from exc


def quantization_summary(model: onnx.ModelProto) -> Dict[str, int]:
    """Counts of quantized and float convolutions (a conv is quantized when its weight is DQ'd)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    quantized = floats = 0
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            src = producers.get(node.input[1])
            if src is not None and src.op_type == "DequantizeLinear":
                quantized += 1
            else:
                floats += 1
    return {"quantized_convs": quantized, "float_convs": floats}


def check_tensorrt_qdq(model: onnx.ModelProto, conv_transpose_axis: Optional[int] = 0) -> None:
    """ExportError unless every Q/DQ is what TensorRT's explicit quantization accepts.

    Symmetric int8 (zero point 0) everywhere, no int32 (bias) DequantizeLinear, ConvTranspose
    weights on ``conv_transpose_axis``. Guards against an onnxruntime that ignores an option.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consumers = {i: n for n in model.graph.node for i in n.input}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        zero = numpy_helper.to_array(zp) if zp is not None else None
        if zero is None or zero.dtype != np.int8 or zero.any():
            found = "none" if zero is None else f"{zero.dtype} {zero.ravel()[:3].tolist()}"
            raise ExportError(
                f"{node.name}: TensorRT needs int8 zero points of 0, found {found}; "
                f"re-quantize with --int8-target tensorrt (and a current onnxruntime)"
            )
        conv = consumers.get(node.output[0])
        if (
            node.op_type == "DequantizeLinear"
            and conv is not None
            and conv.op_type == "ConvTranspose"
            and conv.input[1] == node.output[0]
            and conv_transpose_axis is not None
        ):
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if axis != conv_transpose_axis:
                raise ExportError(
                    f"{conv.name}: weights quantized on axis {axis}, TensorRT's deconvolution "
                    f"needs axis {conv_transpose_axis}; upgrade onnxruntime (>= 1.18, "
                    f"TensorQuantOverrides) and re-quantize"
                )
