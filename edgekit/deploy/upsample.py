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

The same factorisation read the other way gives a third form: nearest upsampling followed by w is
zero insertion followed by h = box_s * w, a transposed convolution with stride s and kernel h, and
that splits into s phases: output s*b + p is a short (2q + 1 tap) correlation of the padded input
around b with every s-th tap of h. So replicate-pad -> per axis, s depthwise convs interleaved by a
concat and reshapes is the same linear map with no resize at all, and each tap is computed at the
input's resolution (for runtimes, such as ExecuTorch's XNNPACK delegate, that have neither
resize-nearest nor depth-to-space; its depthwise transposed conv measured 10x slower).
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


def _repeat(edge: torch.Tensor, n: int, dim: int) -> torch.Tensor | None:
    """`n` copies of a width-1 slice, by doubling: concats of two inputs only."""
    if n == 0:
        return None
    block = edge if n % 2 else None
    power = edge
    n //= 2
    while n:
        power = torch.cat([power, power], dim=dim)
        if n % 2:
            block = power if block is None else torch.cat([block, power], dim=dim)
        n //= 2
    return block


def replicate_pad(x: torch.Tensor, left: int, right: int, dim: int, one_concat: bool = False) -> torch.Tensor:
    """Edge-replicate padding from slices and concats of at most three inputs (4-D, static, every
    runtime has both; TFLite's XNNPACK delegate leaves a concat of more inputs to the CPU reference
    kernel). `one_concat`: a single concat naming each edge slice as often as it repeats (ExecuTorch's
    XNNPACK partitioner counts distinct inputs and refuses a concat of one tensor with itself)."""
    if not (left or right):
        return x
    lead = (slice(None),) * dim
    first, last = x[(*lead, slice(0, 1))], x[(*lead, slice(-1, None))]  # constant slices: no Shape op
    if one_concat:
        return torch.cat([first] * left + [x] + [last] * right, dim=dim)
    parts = [p for p in (_repeat(first, left, dim), x, _repeat(last, right, dim)) if p is not None]
    return torch.cat(parts, dim=dim)


class _NearestX2(torch.autograd.Function):
    """Nearest-neighbour x2 upsampling. Exported to ONNX as Concat (four copies on the channel axis)
    + DepthToSpace(DCR): output[c, 2h+i, 2w+j] = copies[(2i+j)C + c, h, w] = x[c, h, w]. onnx2tf maps
    that to CONCATENATION + DEPTH_TO_SPACE, which XNNPACK runs; RESIZE_NEAREST_NEIGHBOR it does not."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")

    @staticmethod
    def symbolic(g, x):
        copies = g.op("Concat", x, x, x, x, axis_i=1)
        return g.op("DepthToSpace", copies, blocksize_i=2, mode_s="DCR")


def nearest_upsample(x: torch.Tensor, scale: int, depth_to_space: bool) -> torch.Tensor:
    if not depth_to_space:
        return F.interpolate(x, scale_factor=scale, mode="nearest")
    if scale & (scale - 1):
        raise ValueError(f"depth-to-space nearest upsampling needs a power-of-two scale, not {scale}")
    while scale > 1:  # x4 as two x2 steps: each concat has four inputs
        x = _NearestX2.apply(x)
        scale //= 2
    return x


class ExactBicubicUpsample(nn.Module):
    """The same linear map as F.interpolate(bicubic, x scale), as resize-nearest/concat/dwconv."""

    def __init__(self, scale: int, channels: int):
        super().__init__()
        taps, self.pad = bicubic_factorisation(scale)
        self.scale = scale
        self.depth_to_space = False  # set by the nearest_depth_to_space pass (TFLite)
        self.polyphase = False  # set by use_polyphase (ExecuTorch)
        k = torch.tensor(taps, dtype=torch.float32)
        self.conv_h = nn.Conv2d(channels, channels, (len(taps), 1), groups=channels, bias=False)
        self.conv_w = nn.Conv2d(channels, channels, (1, len(taps)), groups=channels, bias=False)
        with torch.no_grad():
            self.conv_h.weight.copy_(k.view(1, 1, -1, 1).expand(channels, 1, -1, 1))
            self.conv_w.weight.copy_(k.view(1, 1, 1, -1).expand(channels, 1, 1, -1))
        for p in self.parameters():
            p.requires_grad_(False)

    def use_polyphase(self) -> None:
        """Compute as replicate pad + s phase convs per axis, interleaved (see the module docstring)."""
        s, q = self.scale, -(-self.pad // self.scale)
        taps = self.conv_h.weight[0, 0, :, 0].double()
        h = F.conv1d(torch.ones(1, 1, s, dtype=torch.float64), taps.view(1, 1, -1),
                     padding=len(taps) - 1)[0, 0]  # box_s * w, both symmetric: K + s - 1 taps
        crop = q * s + self.pad  # where output 0 sits in the full output of the transposed conv by h
        window = 2 * q + 1  # input pixels any output depends on: the padded neighbourhood
        channels = self.conv_h.in_channels
        self.phases_h, self.phases_w = nn.ModuleList(), nn.ModuleList()
        for phase in range(s):
            # output s*b + phase = sum over d of padded[b + d] * h[phase + crop - s*d]
            reach = [d for d in range(-len(h), len(h) + window) if 0 <= phase + crop - s * d < len(h)]
            assert 0 <= min(reach) and max(reach) < window, "the phase kernel reaches outside the padded input"
            k = torch.stack([h[phase + crop - s * d] if d in reach else h.new_zeros(()) for d in range(window)])
            for phases, shape in ((self.phases_h, (window, 1)), (self.phases_w, (1, window))):
                conv = nn.Conv2d(channels, channels, shape, groups=channels, bias=False, dtype=self.conv_h.weight.dtype)
                with torch.no_grad():
                    conv.weight.copy_(k.view(1, 1, *shape).expand(channels, 1, *shape))
                conv.weight.requires_grad_(False)
                phases.append(conv)
        self.polyphase = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.polyphase:
            return self._polyphase(x)
        # Edge-clamp the *input* by q = ceil(pad / scale) pixels (a concat of 2q + 1 <= 5 inputs, which
        # XNNPACK takes; padding the upsampled tensor needed up to 13), upsample, then crop the
        # q * scale - pad extra copies of the edge: the same tensor as replicate-padding the
        # upsampled one by `pad`, so the same linear map exactly.
        q = -(-self.pad // self.scale)
        x = replicate_pad(replicate_pad(x, q, q, 2), q, q, 3)
        x = nearest_upsample(x, self.scale, self.depth_to_space)
        c = q * self.scale - self.pad
        if c:
            x = x[:, :, c:-c, c:-c]
        return self.conv_w(self.conv_h(x))

    def _polyphase(self, x: torch.Tensor) -> torch.Tensor:
        s, q = self.scale, -(-self.pad // self.scale)
        b, c, height, width = x.shape
        x = replicate_pad(replicate_pad(x, q, q, 2, one_concat=True), q, q, 3, one_concat=True)
        # interleave rows: phase p of row r is output row s*r + p (a 5-D concat and reshapes, no permute)
        x = torch.cat([conv(x).reshape(b, c, height, 1, width + 2 * q) for conv in self.phases_h], dim=3)
        x = x.reshape(b, c, height * s, width + 2 * q)
        x = torch.cat([conv(x).reshape(b, c, height * s, width, 1) for conv in self.phases_w], dim=4)
        return x.reshape(b, c, height * s, width * s)


class BilinearUpsample(nn.Module):
    """The official TFLite script's substitute: not the trained model's function (opt-in only)."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
