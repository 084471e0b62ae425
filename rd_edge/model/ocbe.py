"""One-Class Bottleneck Embedding (OCBE): multi-scale feature fusion + one-class embedding.

Mirrors ``BN_layer`` of the RD4AD reference code: layer1 and layer2 features are brought to the
layer3 resolution by strided 3x3 convolutions, concatenated with layer3 (768e channels) and
compressed by one ResNet stage (stride 2, planes 512).
"""

from __future__ import annotations

from typing import List

import torch
from torch import Tensor, nn

from .resnet import BackboneSpec, conv1x1, conv3x3, init_weights


class OCBE(nn.Module):
    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        e = spec.expansion
        block = spec.block
        # MFF: layer1 goes down twice, layer2 once, to meet layer3's resolution.
        self.conv1 = conv3x3(64 * e, 128 * e, 2)
        self.bn1 = nn.BatchNorm2d(128 * e)
        self.conv2 = conv3x3(128 * e, 256 * e, 2)
        self.bn2 = nn.BatchNorm2d(256 * e)
        self.conv3 = conv3x3(128 * e, 256 * e, 2)
        self.bn3 = nn.BatchNorm2d(256 * e)
        self.relu = nn.ReLU(inplace=True)
        # OCE: one ResNet stage on the concatenation (3 * 256e channels), stride 2, planes 512.
        # Block counts follow the reference: 3 Bottlenecks (resnet50/wrn50), 2 BasicBlocks (resnet18/34).
        n_blocks = 3 if block.expansion == 4 else 2
        in_ch, out_ch = 3 * 256 * e, 512 * e
        downsample = nn.Sequential(conv1x1(in_ch, out_ch, 2), nn.BatchNorm2d(out_ch))
        blocks = [block(in_ch, 512, 2, downsample, spec.width_per_group)]
        blocks += [block(out_ch, 512, base_width=spec.width_per_group) for _ in range(1, n_blocks)]
        self.bn_layer = nn.Sequential(*blocks)
        init_weights(self)

    def forward(self, features: List[Tensor]) -> Tensor:
        # features: [N,64e,H/4], [N,128e,H/8], [N,256e,H/16] -> [N,512e,H/32,W/32]
        f1 = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(features[0]))))))
        f2 = self.relu(self.bn3(self.conv3(features[1])))
        fused = torch.cat([f1, f2, features[2]], dim=1)
        return self.bn_layer(fused)
