"""The anomaly-map reduction: per-scale cosine distance, upsample, sum, Gaussian blur, max.

Written with operators every deployment target loads, because the exporter fuses this module into
the ONNX graph as is (ONNX Runtime, TensorRT 8.5+, OpenCV DNN 4.6):
- channel sums are 1x1 convolutions with a ones kernel (no ReduceSum, whose axes became an input
  in opset 13 and which OpenCV 4.6 then rejects);
- the cosine adds an eps under each square root instead of clamping (no Max with a constant);
- the blur is two separable 1-D convolutions over a symmetrically padded map, scipy's "reflect"
  border (d c b a | a b c d). The mirrored strips are a constant anti-identity MatMul, since
  ONNX Pad's "reflect" mode does not repeat the edge pixel and negative-step Slice is not loaded
  by older runtimes.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLUR_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default: the kernel reaches 4 sigma
COSINE_EPS = 1e-8  # under the square root: a norm floor of 1e-4; kept in fp32 by the exporter


def gaussian_kernel_1d(sigma: float, truncate: float = BLUR_TRUNCATE) -> Tensor:
    """The normalized 1-D Gaussian scipy.ndimage.gaussian_filter uses (2*int(truncate*sigma+0.5)+1 taps)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


class GaussianBlur(nn.Module):
    """Separable Gaussian blur of a [N,1,H,W] map with scipy's 'reflect' (symmetric) border.

    The map size is fixed at construction so every slice in the exported graph is a constant.
    """

    def __init__(self, sigma: float, size: Tuple[int, int]) -> None:
        super().__init__()
        kernel = gaussian_kernel_1d(sigma)
        self.radius = (kernel.numel() - 1) // 2
        self.size = tuple(size)
        if min(self.size) <= self.radius:
            raise ValueError(f"map size {self.size} must exceed the blur radius {self.radius}")
        self.register_buffer("kernel", kernel.view(1, 1, 1, -1), persistent=False)
        # [r, r] anti-identity: x[..., :r] @ flip == x[..., :r] reversed along the last axis
        self.register_buffer("flip", torch.eye(self.radius).flip(0), persistent=False)

    def _blur_last_axis(self, x: Tensor, length: int) -> Tensor:
        # x: [N,1,A,B] -> symmetric pad on B: [N,1,A,B+2r] -> valid conv: [N,1,A,B]
        r = self.radius
        left = torch.matmul(x[..., 0:r], self.flip)
        right = torch.matmul(x[..., length - r : length], self.flip)
        return F.conv2d(torch.cat([left, x, right], dim=-1), self.kernel)

    def forward(self, x: Tensor) -> Tensor:
        h, w = self.size
        x = self._blur_last_axis(x, w)  # along W
        return self._blur_last_axis(x.transpose(2, 3), h).transpose(2, 3)  # along H


class AnomalyMapHead(nn.Module):
    """Teacher and student features -> (anomaly_map [N,1,H,W], score [N])."""

    def __init__(
        self, image_size: Tuple[int, int], feature_channels: Sequence[int], sigma: float = 4.0
    ) -> None:
        super().__init__()
        self.image_size = tuple(image_size)
        # One ones-kernel per scale: a 1x1 conv with it is the sum over channels.
        for i, channels in enumerate(feature_channels):
            self.register_buffer(f"channel_sum_{i}", torch.ones(1, channels, 1, 1), persistent=False)
        self.n_scales = len(feature_channels)
        self.blur = GaussianBlur(sigma, self.image_size)

    def cosine_distance(self, teacher: Tensor, student: Tensor, scale: int) -> Tensor:
        """1 - cos(f_T, f_S) over channels: [N,C,h,w] x2 -> [N,1,h,w]."""
        ones = getattr(self, f"channel_sum_{scale}")
        dot = F.conv2d(teacher * student, ones)
        norm_t = torch.sqrt(F.conv2d(teacher * teacher, ones) + COSINE_EPS)
        norm_s = torch.sqrt(F.conv2d(student * student, ones) + COSINE_EPS)
        return 1.0 - dot / (norm_t * norm_s)

    def raw_map(self, teacher: List[Tensor], student: List[Tensor]) -> Tensor:
        """Sum over scales of the upsampled cosine distances, before the blur: [N,1,H,W]."""
        total = None
        for i, (ft, fs) in enumerate(zip(teacher, student)):
            # Features sit at 1/4, 1/8, 1/16 of the input. A constant scale factor (not a size
            # computed from shapes) keeps the exported Resize free of shape arithmetic; with
            # align_corners the sampling positions are the same either way.
            factor = float(2 ** (i + 2))
            d = F.interpolate(
                self.cosine_distance(ft, fs, i), scale_factor=factor, mode="bilinear", align_corners=True
            )
            total = d if total is None else total + d
        return total

    def forward(self, teacher: List[Tensor], student: List[Tensor]) -> Tuple[Tensor, Tensor]:
        amap = self.blur(self.raw_map(teacher, student))  # [N,1,H,W]
        # Global max pool rather than ReduceMax: every runtime loads it, with no axes to carry.
        score = F.adaptive_max_pool2d(amap, 1).reshape(-1)  # [N]
        return amap, score


def blur_sigma_taps(sigma: float) -> int:
    """Number of taps of the blur kernel for sigma (33 for sigma 4)."""
    return 2 * int(BLUR_TRUNCATE * sigma + 0.5) + 1
