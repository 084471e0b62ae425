"""The one list of each choice the command lines offer; every CLI and library check reads these.

String-valued enums, so ``Precision.FP16 == "fp16"`` and JSON/metadata keep plain strings.
"""

from __future__ import annotations

from enum import Enum
from typing import List, Type


class Choice(str, Enum):
    """A str Enum whose members compare equal to their value."""

    def __str__(self) -> str:
        return str(self.value)


class Precision(Choice):
    """Numeric precision of an exported graph or a TensorRT engine."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class InferencePrecision(Choice):
    """Precision OpenVINO runs float layers in (its INFERENCE_PRECISION_HINT, always set)."""

    FP32 = "fp32"
    BF16 = "bf16"  # only where the CPU has it (AVX-512 BF16 / AMX)


class ExportFormat(Choice):
    """What rd-export writes."""

    ONNX = "onnx"  # the fused graph (ONNX Runtime, TensorRT, OpenCV DNN, Triton)
    OPENVINO = "openvino"  # an OpenVINO IR: model.xml + model.bin


class Int8Target(Choice):
    """Which runtime an int8 Q/DQ graph is calibrated for."""

    TENSORRT = "tensorrt"  # symmetric int8 activations, what TensorRT needs
    CPU = "cpu"  # uint8 activations, fastest in ONNX Runtime on x86


class Int8Scope(Choice):
    """Which convolutions an int8 graph quantizes."""

    STUDENT = "student"  # OCBE's bottleneck stage and the student; the rest stays float
    FULL = "full"  # every teacher/OCBE/student convolution
    # OpenVINO only: full, then NNCF's accuracy control reverts the layers that cost the most
    # fidelity to float until the fidelity bound holds
    MIXED = "mixed"
    AUTO = "auto"  # rd-export tries full (then mixed for OpenVINO), then student: the fastest within a fidelity bound


class CalibrationMethod(Choice):
    MINMAX = "minmax"  # each activation's range: its extremes over every calibration image
    MEAN_MINMAX = "mean-minmax"  # the mean of each image's extremes: one odd image does not set it
    PERCENTILE = "percentile"
    ENTROPY = "entropy"


class Backbone(Choice):
    RESNET18 = "resnet18"
    RESNET34 = "resnet34"
    RESNET50 = "resnet50"
    WIDE_RESNET50_2 = "wide_resnet50_2"


class TrainDevice(Choice):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def values(choice: Type[Choice]) -> List[str]:
    """The plain string values, in declaration order (argparse ``choices=``)."""
    return [member.value for member in choice]


class BackendName(Choice):
    """The inference backends rd-edge ships (each registers itself under this name)."""

    ORT = "ort"  # ONNX Runtime: CPU, CUDA and TensorRT execution providers
    TRT = "trt"  # native TensorRT engine
    OPENVINO = "openvino"  # OpenVINO on the CPU: IR (.xml) or ONNX
