"""Reverse Distillation: frozen teacher, trainable OCBE + student, and the fused inference module."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from rd_edge.core.metadata import RESIZE_DEFAULT, RESIZE_RULES

from .anomaly_map import AnomalyMapHead
from .decoder import Decoder
from .ocbe import OCBE
from .resnet import ResNetEncoder, backbone_spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; stored in the checkpoint."""

    backbone: str = "wide_resnet50_2"
    image_size: Tuple[int, int] = (256, 256)  # (H, W)
    blur_sigma: float = 4.0
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    # How frames are resized to image_size (rd_edge.core.preprocess). Checkpoints written before
    # the rule was recorded lack it and read "linear" (checkpoint.model_config), their rule.
    resize: str = RESIZE_DEFAULT

    def __post_init__(self) -> None:
        backbone_spec(self.backbone)  # raises on unknown names
        if isinstance(self.image_size, int):
            self.image_size = (self.image_size, self.image_size)
        self.image_size = tuple(int(s) for s in self.image_size)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if self.resize not in RESIZE_RULES:
            raise ValueError(
                f"unknown resize rule {self.resize!r}; expected one of {', '.join(RESIZE_RULES)}"
            )
        bad = [s for s in self.image_size if s < 64 or s % 32]
        if len(self.image_size) != 2 or bad:
            raise ValueError(
                f"image size must be two multiples of 32 of at least 64 (the decoder "
                f"mirrors five stride-2 stages); got {self.image_size}"
            )

    def to_dict(self) -> Dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def cosine_loss(teacher: List[Tensor], student: List[Tensor]) -> Tensor:
    """RD4AD's loss: per scale, batch mean of 1 - cos of the flattened feature maps, summed."""
    loss = teacher[0].new_zeros(())
    for ft, fs in zip(teacher, student):
        cos = torch.nn.functional.cosine_similarity(ft.flatten(1), fs.flatten(1), dim=1)
        loss = loss + (1.0 - cos).mean()
    return loss


class ReverseDistillation(nn.Module):
    """Teacher encoder (frozen, eval), OCBE and student decoder. Input is normalized images."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        spec = backbone_spec(backbone)
        self.teacher = ResNetEncoder(spec)
        self.ocbe = OCBE(spec)
        self.student = Decoder(spec)
        self.teacher.requires_grad_(False)
        self.feature_channels = spec.feature_channels

    def train(self, mode: bool = True) -> "ReverseDistillation":
        super().train(mode)
        self.teacher.eval()  # the teacher's BatchNorm statistics never move
        return self

    def trainable_parameters(self) -> List[nn.Parameter]:
        return list(self.ocbe.parameters()) + list(self.student.parameters())

    def forward(self, x: Tensor) -> Tuple[List[Tensor], List[Tensor]]:
        # x: [N,3,H,W] normalized -> teacher and student features at H/4, H/8, H/16
        with torch.no_grad():
            teacher = self.teacher(x)
        student = self.student(self.ocbe(teacher))
        return teacher, student


class Normalize(nn.Module):
    """[0,1] RGB -> ImageNet-normalized, as a per-channel multiply-add (no BatchNorm node)."""

    def __init__(self, mean: Tuple[float, ...], std: Tuple[float, ...]) -> None:
        super().__init__()
        std_t = torch.tensor(std).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / std_t, persistent=False)
        self.register_buffer("shift", -torch.tensor(mean).view(1, 3, 1, 1) / std_t, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


class RDInference(nn.Module):
    """The deployable model: float32 [N,3,H,W] RGB in [0,1] -> (anomaly_map [N,1,H,W], score [N]).

    Normalization, teacher, OCBE, student and the anomaly-map reduction in one module; this is
    what ``rd-export`` fuses into one ONNX graph.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.normalize = Normalize(config.mean, config.std)
        self.rd = ReverseDistillation(config.backbone)
        self.head = AnomalyMapHead(config.image_size, self.rd.feature_channels, config.blur_sigma)

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor]:
        teacher, student = self.rd(self.normalize(image))
        return self.head(teacher, student)
