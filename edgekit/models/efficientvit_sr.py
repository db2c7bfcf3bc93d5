"""EfficientViT super-resolution (x2): edgekit's own design, after the high-resolution paper's Table 7.

The authors published neither code nor weights for their SR models, so this architecture is ours. It
follows what the paper says of them: an EfficientViT built from the MIT family's own blocks (MBConv
with Hardswish, ReLU linear attention with 5x5 multi-scale aggregation), trained from random
initialisation, scored by PSNR/SSIM on the Y channel; "w0.75" is the same network at 0.75x width.
What is ours: the lightweight-SR layout the field uses around such a body (a 3x3 stem, a long
residual over the blocks, a sub-pixel upsampler) and a learned skip initialised to bicubic x2, so the
network only learns the detail bicubic misses. Every op is a conv, an activation, the attention's
matmuls or a depth-to-space: all five targets run them, and the deploy passes (BatchNorm folding, the
static attention forms) apply unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from edgekit.models.efficientvit_mit import ConvLayer, EfficientViTBlock


def _cubic(d: float, a: float = -0.75) -> float:
    """PyTorch's bicubic kernel (a = -0.75)."""
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a if d < 2 else 0.0


def bicubic_x2_kernel(channels: int = 3) -> torch.Tensor:
    """Conv weights (4*C, C, 5, 5) whose depth-to-space by 2 is bicubic x2 upsampling.

    Output pixel 2i+p samples the input at i + (p/2 - 1/4) (half-pixel centres, align_corners=False);
    its four taps sit at i-2..i+1 (p=0) or i-1..i+2 (p=1). Output channel c*4 + py*2 + px is what
    PixelShuffle puts at sub-pixel (py, px) of channel c.
    """
    taps = np.zeros((2, 5))
    for p, shift in ((0, -0.25), (1, 0.25)):
        for k in range(5):
            taps[p, k] = _cubic(k - 2 - shift)
    weight = torch.zeros(4 * channels, channels, 5, 5)
    for c in range(channels):
        for py in range(2):
            for px in range(2):
                weight[c * 4 + py * 2 + px, c] = torch.from_numpy(np.outer(taps[py], taps[px])).float()
    return weight


class EfficientViTSR(nn.Module):
    """RGB in [0, 1] at (H, W) -> RGB at (2H, 2W), unclamped (clamp when you write pixels)."""

    def __init__(self, width: int, depth: int, dim: int = 16, expand_ratio: float = 4, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.stem = ConvLayer(3, width, 3, use_bias=True, norm=False)
        self.blocks = nn.Sequential(*[EfficientViTBlock(width, dim, expand_ratio, nn.Hardswish)
                                      for _ in range(depth)])
        self.body_out = ConvLayer(width, width, 3, use_bias=True, norm=False)
        self.to_subpixels = nn.Conv2d(width, 3 * scale * scale, 3, padding=1)
        self.skip = nn.Conv2d(3, 3 * scale * scale, 5, padding=2, bias=False)
        self.upsample = nn.PixelShuffle(scale)
        with torch.no_grad():
            self.skip.weight.copy_(bicubic_x2_kernel(3))
            self.to_subpixels.weight.mul_(0.1)  # start near bicubic: the detail branch begins small
            self.to_subpixels.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stem(x)
        features = features + self.body_out(self.blocks(features))
        return self.upsample(self.to_subpixels(features) + self.skip(x))


def build_efficientvit_sr(config: dict) -> EfficientViTSR:
    return EfficientViTSR(config["width"], config["depth"], config.get("dim", 16), config.get("expand_ratio", 4),
                          config.get("scale", 2))
