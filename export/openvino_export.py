"""rd-export --format openvino: the verified fp32 ONNX graph -> an OpenVINO IR (model.xml + model.bin).

The IR carries the same ``rd_edge`` metadata as the ONNX (top-level runtime info, read by
:func:`rd_edge.core.ir_props.read_ir_metadata`); its ``precision`` says how it runs:

- ``fp32``: fp32 weights, run with OpenVINO's inference precision set to f32.
- ``bf16``: the same fp32 weights, run in bf16 by default (the runtime refuses a CPU without
  bf16, and ``precision="fp32"`` overrides it).
- ``int8``: NNCF post-training quantization calibrated on good images (:mod:`.openvino_int8`).

Every IR is checked against the fp32 ONNX it came from (which rd-export verified against the
torch model): fp32 within :data:`IR_TOLERANCE`; bf16 and int8 are reported by fidelity.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from rd_edge.core.choices import BackendName, InferencePrecision
from rd_edge.core.errors import ExportError, VerificationError
from rd_edge.core.ir_props import ir_weights_path
from rd_edge.core.metadata import INPUT_NAME, METADATA_KEY, ModelMetadata
from rd_edge.core.onnx_props import read_onnx_metadata
from rd_edge.core.optional import lazy_import
from rd_edge.runtime import load_runner

PathLike = Union[str, Path]
ov = lazy_import("openvino", "rd-export --format openvino", "`pip install '.[openvino]'`", ExportError)

IR_TOLERANCE = 1e-4  # max |d map|, |d score| of the fp32 IR against the fp32 ONNX in ONNX Runtime
IR_PRECISIONS = ("fp32", "bf16", "int8")


@dataclass
class IrParity:
    """The IR against the ONNX graph it came from, on the same images."""

    images: str
    n_images: int
    inference_precision: str
    max_abs_map: float
    max_abs_score: float
    tolerance: Optional[float]  # None: reported, not enforced (bf16, int8)

    @property
    def ok(self) -> bool:
        return self.tolerance is None or max(self.max_abs_map, self.max_abs_score) <= self.tolerance

    def format(self) -> str:
        bound = f"tolerance {self.tolerance:g}" if self.tolerance is not None else "reported, not enforced"
        return (
            f"OpenVINO ({self.inference_precision} inference) vs ONNX Runtime fp32 on {self.n_images} "
            f"{self.images}: max|d map| {self.max_abs_map:.2e}  max|d score| {self.max_abs_score:.2e}  "
            f"({bound}) {'ok' if self.ok else 'FAIL'}"
        )


@dataclass
class IrReport:
    xml_path: Path
    precision: str
    parity: Sequence[IrParity]
    metadata: ModelMetadata

    def format(self) -> str:
        lines = [
            f"wrote {self.xml_path} + {ir_weights_path(self.xml_path).name} (OpenVINO IR, {self.precision})"
        ]
        return "\n".join(lines + [f"  {p.format()}" for p in self.parity])


def default_ir_path(model: Path, precision: str) -> Path:
    """<stem>.xml for fp32, <stem>_<precision>.xml otherwise, next to the input."""
    return model.with_name(f"{model.stem}.xml" if precision == "fp32" else f"{model.stem}_{precision}.xml")


def convert_onnx(onnx_path: Path) -> Any:
    """ov.Model of an fp32 rd-export graph (ExportError for anything else)."""
    meta = read_onnx_metadata(onnx_path)
    if meta.precision != "fp32":
        raise ExportError(
            f"{onnx_path} is a {meta.precision} graph; the OpenVINO IR is made from the fp32 "
            f"export (rd-export model.pt -o model.onnx), its precision chosen with --precision"
        )
    module = ov.load()
    try:
        model = module.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO's converter raises its own exception types
        raise ExportError(f"OpenVINO cannot convert {onnx_path}: {exc}") from exc
    return name_deconvolutions(model)


def name_deconvolutions(model: Any) -> Any:
    """Give each ConvTranspose its ONNX node's name: OpenVINO splits it into an unnamed
    ConvolutionBackpropData ("ConvolutionBackpropData_408") and the bias Add, which keeps the
    name. NNCF's scopes match names (/rd/student/...): unnamed, the student's upsampling stayed
    float in every int8 scope."""
    for op in model.get_ordered_ops():
        if op.get_type_name() != "ConvolutionBackpropData" or op.get_friendly_name().startswith("/"):
            continue
        users = [target.get_node() for target in op.output(0).get_target_inputs()]
        if len(users) == 1 and users[0].get_friendly_name().startswith("/"):
            op.set_friendly_name(users[0].get_friendly_name() + "/deconvolution")
    return model


def ir_metadata(meta: ModelMetadata, precision: str, **extra: Any) -> ModelMetadata:
    return replace(
        meta,
        precision=precision,
        extra={**meta.extra, "format": "openvino", "openvino": ov.load().__version__, **extra},
    )


@contextlib.contextmanager
def staged_ir(xml_out: Path) -> Iterator[Path]:
    """A scratch model.xml beside ``xml_out``; on success its .bin then its .xml are renamed onto
    ``xml_out`` (a failure, Ctrl-C included, leaves what was at ``xml_out`` untouched)."""
    xml_out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{xml_out.stem}.", dir=xml_out.parent) as tmp:
        tmp_xml = Path(tmp) / "model.xml"
        yield tmp_xml
        os.replace(ir_weights_path(tmp_xml), ir_weights_path(xml_out))
        os.replace(tmp_xml, xml_out)


def save_ir(model: Any, xml_path: Path, meta: ModelMetadata) -> None:
    """Write model.xml + model.bin with the metadata as runtime info."""
    model.set_rt_info(meta.to_json(), METADATA_KEY)
    try:
        # fp32 weights: compress_to_fp16 (OpenVINO's default) would round every weight to fp16
        ov.load().save_model(model, str(xml_path), compress_to_fp16=False)
    except Exception as exc:
        raise ExportError(f"OpenVINO could not write {xml_path}: {exc}") from exc


def check_ir(xml_path: Path, onnx_path: Path, images: np.ndarray, source: str, precision: str) -> IrParity:
    """Run the IR (OpenVINO, the given inference precision) and the ONNX (ORT) on ``images``."""
    ref = load_runner(onnx_path, BackendName.ORT.value, providers="cpu").infer({INPUT_NAME: images})
    with load_runner(xml_path, BackendName.OPENVINO.value, precision=precision) as runner:
        out = runner.infer({INPUT_NAME: images})
    tolerance = IR_TOLERANCE if precision == "fp32" and runner.metadata.precision != "int8" else None
    return IrParity(
        source,
        len(images),
        precision,
        float(np.abs(out["anomaly_map"] - ref["anomaly_map"]).max()),
        float(np.abs(out["score"] - ref["score"]).max()),
        tolerance,
    )


def _check_images(meta: ModelMetadata, n: int = 4) -> Tuple[np.ndarray, str]:
    rng = np.random.default_rng(0)
    return rng.random((n, 3, meta.height, meta.width), dtype=np.float32), "random images"


def export_ir(
    onnx_path: PathLike,
    xml_out: PathLike,
    precision: str = "fp32",
    images: Optional[np.ndarray] = None,
    image_source: str = "images",
) -> IrReport:
    """fp32 ONNX -> IR of ``precision`` fp32 or bf16 (int8: :func:`.openvino_int8.quantize_ir`).

    Verified: the IR in f32 against the ONNX within IR_TOLERANCE (VerificationError otherwise,
    nothing left at ``xml_out``); a bf16 IR also reports its bf16 difference.
    """
    onnx_path, xml_out = Path(onnx_path), Path(xml_out)
    if precision not in (InferencePrecision.FP32.value, InferencePrecision.BF16.value):
        raise ExportError(f"--precision {precision!r} for an OpenVINO IR here: expected fp32 or bf16")
    model = convert_onnx(onnx_path)
    meta = ir_metadata(read_onnx_metadata(onnx_path), precision)
    if images is None:
        images, image_source = _check_images(meta)
    with staged_ir(xml_out) as tmp:
        save_ir(model, tmp, meta)
        parity = [check_ir(tmp, onnx_path, images, image_source, "fp32")]
        if precision == "bf16":
            parity.append(check_ir(tmp, onnx_path, images, image_source, "bf16"))
        if not all(p.ok for p in parity):
            raise VerificationError(
                "the OpenVINO IR disagrees with the ONNX graph it came from:\n"
                + "\n".join(p.format() for p in parity)
                + f"\n{xml_out} was not written (an existing file there is untouched)"
            )
    return IrReport(xml_out, precision, parity, meta)
