"""Student decoder: the reverse of ResNet layer3..layer1, upsampling with 2x2 transposed convs.

Mirrors ``de_resnet.py`` of the RD4AD reference code (block counts included: the decoder's
stages take the teacher's ``layers[0..2]`` in that order).
"""

from __future__ import annotations

from typing import List, Optional

from torch import Tensor, nn

from .resnet import BackboneSpec, conv1x1, conv3x3, init_weights


def deconv2x2(in_planes: int, out_planes: int, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_planes, out_planes, kernel_size=2, stride=stride, bias=False)


class DeBasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        upsample: Optional[nn.Module] = None,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        self.conv1 = deconv2x2(inplanes, planes, stride) if stride == 2 else conv3x3(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DeBottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        upsample: Optional[nn.Module] = None,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0))
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = deconv2x2(width, width, stride) if stride == 2 else conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class Decoder(nn.Module):
    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.block = DeBottleneck if spec.expansion == 4 else DeBasicBlock
        self.base_width = spec.width_per_group
        self.inplanes = 512 * self.block.expansion
        self.layer1 = self._make_layer(256, spec.layers[0])
        self.layer2 = self._make_layer(128, spec.layers[1])
        self.layer3 = self._make_layer(64, spec.layers[2])
        init_weights(self)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        out_ch = planes * self.block.expansion
        upsample = nn.Sequential(deconv2x2(self.inplanes, out_ch), nn.BatchNorm2d(out_ch))
        layers = [self.block(self.inplanes, planes, 2, upsample, self.base_width)]
        self.inplanes = out_ch
        layers += [self.block(out_ch, planes, base_width=self.base_width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> List[Tensor]:
        # x: [N,512e,H/32] -> [N,64e,H/4], [N,128e,H/8], [N,256e,H/16] (the teacher's order)
        a = self.layer1(x)
        b = self.layer2(a)
        c = self.layer3(b)
        return [c, b, a]
