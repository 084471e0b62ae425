"""The PyTorch side of rd-edge: teacher, OCBE, student, loss and anomaly map."""

from .anomaly_map import AnomalyMapHead, GaussianBlur, gaussian_kernel_1d
from .rd import ModelConfig, RDInference, ReverseDistillation, cosine_loss
from .resnet import BACKBONES, backbone_spec

__all__ = [
    "AnomalyMapHead",
    "GaussianBlur",
    "gaussian_kernel_1d",
    "ModelConfig",
    "RDInference",
    "ReverseDistillation",
    "cosine_loss",
    "BACKBONES",
    "backbone_spec",
]
