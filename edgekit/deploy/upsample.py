"""Bicubic upsampling in forms that every target runs.

TFLite has no bicubic resize and CoreML rejects it, but a bicubic upsample by a fixed integer factor
is a fixed linear map. PyTorch's bicubic (a=-0.75, align_corners=False, edge-clamped) factorises
exactly as

    nearest-neighbour upsample x s  ->  replicate-pad by (K-1)/2  ->  separable depthwise conv (K x 1, 1 x K)

because the bicubic impulse response h (the "zero-insertion" kernel) equals box_s * w for a short
kernel w (h sums to the same value on every phase, so the polynomial division by the box is exact),
and nearest-neighbour upsampling is zero insertion followed by that box. Edge clamping of the input
is the same as replicate padding of its nearest-upsampled copy. Replicate padding is built from slices
and a concat (TFLite has no edge-mode PAD). The kernel is derived from torch's own interpolate, so
it matches whatever torch computes, and `bicubic_matches` checks it.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

_TOL = 1e-12


@functools.cache
def bicubic_factorisation(scale: int) -> tuple[tuple[float, ...], int]:
    """(taps, pad): nearest x scale -> replicate-pad by `pad` -> valid correlation with taps == bicubic."""
    n = 16
    x = torch.zeros(1, 1, 1, n, dtype=torch.float64)
    x[..., n // 2] = 1.0
    h = F.interpolate(x, scale_factor=(1, scale), mode="bicubic", align_corners=False)[0, 0, 0]
    support = (h.abs() > _TOL).nonzero().flatten()
    first = int(support.min())
    h = h[first : int(support.max()) + 1]
    w: list[torch.Tensor] = []
    for i in range(len(h)):  # polynomial division h / (1 + z^-1 + ... + z^-(s-1))
        w.append(h[i] - sum(w[i - j] for j in range(1, scale) if i - j >= 0))
    while abs(float(w[-1])) < _TOL:
        w.pop()
    # y[o] = sum_i x[i] h[o - s*i + offset]; the correlation over the padded upsampled signal lines
    # up with y when the left pad is len(w) - 1 - offset.
    offset = scale * (n // 2) - first
    pad = len(w) - 1 - offset
    if pad != offset:  # the bicubic kernel is symmetric, so the pads are too
        raise ValueError(f"bicubic x{scale} factorisation is not symmetric (pad {pad}, offset {offset})")
    return tuple(float(v) for v in reversed(w)), pad


def replicate_pad(x: torch.Tensor, left: int, right: int, dim: int) -> torch.Tensor:
    """Edge-replicate padding from slices and one concat (4-D, static, every runtime has both)."""
    if not (left or right):
        return x
    lead = (slice(None),) * dim
    first, last = x[(*lead, slice(0, 1))], x[(*lead, slice(-1, None))]  # constant slices: no Shape op
    return torch.cat([first] * left + [x] + [last] * right, dim=dim)


class ExactBicubicUpsample(nn.Module):
    """The same linear map as F.interpolate(bicubic, x scale), as resize-nearest/concat/dwconv."""

    def __init__(self, scale: int, channels: int):
        super().__init__()
        taps, self.pad = bicubic_factorisation(scale)
        self.scale = scale
        k = torch.tensor(taps, dtype=torch.float32)
        self.conv_h = nn.Conv2d(channels, channels, (len(taps), 1), groups=channels, bias=False)
        self.conv_w = nn.Conv2d(channels, channels, (1, len(taps)), groups=channels, bias=False)
        with torch.no_grad():
            self.conv_h.weight.copy_(k.view(1, 1, -1, 1).expand(channels, 1, -1, 1))
            self.conv_w.weight.copy_(k.view(1, 1, 1, -1).expand(channels, 1, 1, -1))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        x = self.conv_h(replicate_pad(x, self.pad, self.pad, 2))
        return self.conv_w(replicate_pad(x, self.pad, self.pad, 3))


class BilinearUpsample(nn.Module):
    """The official TFLite script's substitute: not the trained model's function (opt-in only)."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
