"""Teacher encoders: torchvision-layout ResNets cut after layer3.

Module and parameter names follow torchvision exactly (``conv1``, ``bn1``, ``layer1.0.downsample.0``...)
so an official torchvision weight file loads as is. Nothing is downloaded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Type, Union

from torch import Tensor, nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0))  # wide ResNets widen only the 3x3 conv
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = Union[Type[BasicBlock], Type[Bottleneck]]


@dataclass(frozen=True)
class BackboneSpec:
    """What differs between the supported backbones."""

    block: Block
    layers: tuple  # blocks per stage, torchvision's numbers (layer1..layer4)
    width_per_group: int = 64

    @property
    def expansion(self) -> int:
        return self.block.expansion

    @property
    def feature_channels(self) -> List[int]:
        """Channels of layer1, layer2, layer3."""
        return [64 * self.expansion, 128 * self.expansion, 256 * self.expansion]


BACKBONES = {
    "resnet18": BackboneSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": BackboneSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": BackboneSpec(Bottleneck, (3, 4, 6, 3)),
    "wide_resnet50_2": BackboneSpec(Bottleneck, (3, 4, 6, 3), width_per_group=128),
}


def backbone_spec(name: str) -> BackboneSpec:
    """Look up a backbone by name; unknown names raise ValueError listing the known ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}") from None


class ResNetEncoder(nn.Module):
    """Stem + layer1..layer3 of a torchvision ResNet; returns the three stage outputs."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, spec.layers[0])
        self.layer2 = self._make_layer(128, spec.layers[1], stride=2)
        self.layer3 = self._make_layer(256, spec.layers[2], stride=2)
        init_weights(self)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        block = self.spec.block
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.spec.width_per_group)]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, base_width=self.spec.width_per_group) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> List[Tensor]:
        # x: [N,3,H,W] normalized -> [N,64e,H/4,W/4], [N,128e,H/8,W/8], [N,256e,H/16,W/16]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f1, f2, f3]


def init_weights(module: nn.Module) -> None:
    """torchvision's initialisation: Kaiming for convolutions, BN at identity."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
