"""Attention blocks for one fixed input size, written in the ops every target runs.

What changes against the trained modules (both are the same function in exact arithmetic):
- all reshapes use constant shapes (batch as -1), so an exported graph has no Shape/Gather chains;
- MIT LiteMLA: the normaliser comes from a ReduceSum of the keys and a matmul instead of padding a
  row of ones onto v and slicing it back off (no PAD: the int16 TFLite kernels reject its float
  constant, and no 5-D/slice juggling). One Transpose per block (k^T); the heads are batched.
- Microsoft CGA: windows are cut with slices and stacked on the batch axis (upstream goes through a
  6-D view), relative-position biases are gathered once at build time (no Gather op), and the
  1/sqrt(key_dim) scale is folded into the query's depthwise conv. Two Transposes per head (q^T for
  the scores and attn^T for the value product), because softmax must run on the last axis, the only
  one TFLite's SOFTMAX accepts.

`fp16_safe` (a separate, measured rewrite) additionally averages the keys over the N tokens before
the products, so v @ k^T is a mean instead of a sum of N terms (fp16 overflows past 65504), and
clamps the normaliser at 2**-14 (fp16's smallest normal) instead of adding 1e-15, which is 0 in
fp16 and turns an all-zero query into 0/0 = NaN. The 1/N goes into the key rows of the qkv conv
(ReLU is positively homogeneous and the aggregation convs are linear and bias-free, so this is
exact, and bit-exact when N is a power of two) instead of a Mul op. Where the mean normaliser is
>= 2**-14 the clamp changes nothing; the effect elsewhere is measured by `edgekit inspect`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgekit.models.efficientvit_mit import LiteMLA
from edgekit.models.efficientvit_msra import CascadedGroupAttention, LocalWindowAttention

Size = tuple[int, int]
FP16_TINY = 2.0**-14

# Transposes the attention math needs in an exported graph (asserted by the tests).
TRANSPOSES_PER_LITEMLA = 1
TRANSPOSES_PER_CGA_HEAD = 2


class StaticLiteMLA(nn.Module):
    def __init__(self, src: LiteMLA, size: Size):
        super().__init__()
        self.qkv, self.aggreg, self.proj, self.kernel_func = src.qkv, src.aggreg, src.proj, src.kernel_func
        self.dim, self.eps = src.dim, src.eps
        self.h, self.w = size
        self.tokens = self.h * self.w
        channels = self.qkv.conv.out_channels * (1 + len(self.aggreg))
        self.heads = channels // (3 * self.dim)
        self.out_channels = self.heads * self.dim
        self.fp16_safe = False  # see make_fp16_safe
        self.den_floor: float | None = None  # see int8_attention_floor in deploy/passes.py
        self.bmm = False  # see bmm_attention in deploy/passes.py
        self.register_buffer("ones", torch.ones(self.tokens, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        qkv = torch.cat([qkv, *(op(qkv) for op in self.aggreg)], dim=1)
        if self.bmm and self.tokens > self.dim:
            return self.proj(self._bmm_core(qkv).reshape(-1, self.out_channels, self.h, self.w))
        qkv = qkv.reshape(-1, self.heads, 3 * self.dim, self.tokens)
        d = self.dim
        q, k, v = self.kernel_func(qkv[:, :, :d]), self.kernel_func(qkv[:, :, d : 2 * d]), qkv[:, :, 2 * d :]
        if self.tokens <= self.dim:  # upstream's quadratic form for tiny maps
            att = torch.matmul(k.transpose(-1, -2), q)
            out = torch.matmul(v, att / self._stabilise(att.sum(dim=2, keepdim=True)))
        else:
            num = torch.matmul(torch.matmul(v, k.transpose(-1, -2)), q)
            den = torch.matmul(k.sum(dim=-1, keepdim=True).reshape(-1, self.heads, 1, d), q)
            out = num / self._stabilise(den)
        return self.proj(out.reshape(-1, self.out_channels, self.h, self.w))

    def _bmm_core(self, qkv: torch.Tensor) -> torch.Tensor:
        """The linear form with heads folded into the batch: 3-D batched matmuls only (no broadcast
        expand), and the key sum as a matmul with a column of ones. The same arithmetic."""
        d = self.dim
        qkv = qkv.reshape(-1, 3 * d, self.tokens)
        q, k, v = self.kernel_func(qkv[:, :d]), self.kernel_func(qkv[:, d : 2 * d]), qkv[:, 2 * d :]
        num = torch.bmm(torch.bmm(v, k.transpose(1, 2)), q)
        den = torch.bmm(torch.matmul(k, self.ones).transpose(1, 2), q)
        return num / self._stabilise(den)

    def _stabilise(self, den: torch.Tensor) -> torch.Tensor:
        if self.den_floor is not None:
            return torch.clamp_min(den, self.den_floor)
        return torch.clamp_min(den, FP16_TINY) if self.fp16_safe else den + self.eps

    @torch.no_grad()
    def make_fp16_safe(self) -> None:
        """Average the keys over the tokens (1/N folded into the qkv conv's key rows) and clamp."""
        if self.fp16_safe:
            return
        if self.tokens > self.dim:
            conv = self.qkv.conv
            heads = conv.out_channels // (3 * self.dim)
            rows = torch.cat([torch.arange(h * 3 * self.dim + self.dim, h * 3 * self.dim + 2 * self.dim)
                              for h in range(heads)])
            conv.weight[rows] *= 1.0 / self.tokens
            if conv.bias is not None:
                conv.bias[rows] *= 1.0 / self.tokens
        self.fp16_safe = True


class StaticCascadedGroupAttention(nn.Module):
    def __init__(self, src: CascadedGroupAttention, window: Size):
        super().__init__()
        self.num_heads, self.key_dim, self.d = src.num_heads, src.key_dim, src.d
        self.qkvs = src.qkvs
        # proj is ReLU -> Conv2d_BN. The ReLU moves before the concat (exact: it is elementwise), onto
        # each head's float attention output: an int8 graph then has no standalone int8 RELU after
        # the concat, which XNNPACK does not take (measured: 6 such nodes left m0-cls int8 in 7
        # delegate partitions).
        if not isinstance(src.proj[0], nn.ReLU):
            raise TypeError("CascadedGroupAttention.proj is expected to start with ReLU")
        self.proj = src.proj[1]
        self.dws = nn.ModuleList(_scaled_conv(dw, src.scale) for dw in src.dws)
        self.window = window
        self.tokens = window[0] * window[1]
        self.split = next(m for m in src.qkvs[0].modules() if isinstance(m, nn.Conv2d)).in_channels
        with torch.no_grad():
            biases = src.attention_biases[:, src.attention_bias_idxs].detach().clone()
        self.register_buffer("biases", biases, persistent=False)

    def set_bmm(self, batch: int) -> None:
        """The bmm form for a fixed number of windows x images: each head's biases stored expanded to
        that batch (a plain add, no broadcast), for runtimes that take 3-D bmm and slices but not
        broadcast expands, selects or splits (ExecuTorch's XNNPACK partitioner)."""
        with torch.no_grad():
            for i in range(self.num_heads):
                self.register_buffer(f"bias_bmm_{i}", self.biases[i].expand(batch, -1, -1).clone(), persistent=False)
        self.bmm_batch = batch

    def _forward_bmm(self, x: torch.Tensor) -> torch.Tensor:
        kd, d, n = self.key_dim, self.d, self.tokens
        outs = []
        feat = None
        for i, qkv in enumerate(self.qkvs):
            part = x[:, i * self.split : (i + 1) * self.split]
            feat = part if feat is None else feat + part
            t = qkv(feat)
            q = self.dws[i](t[:, :kd]).reshape(-1, kd, n)
            k = t[:, kd : 2 * kd].reshape(-1, kd, n)
            v = t[:, 2 * kd :].reshape(-1, d, n)
            attn = (torch.bmm(q.transpose(1, 2), k) + getattr(self, f"bias_bmm_{i}")).softmax(dim=-1)
            feat = torch.bmm(v, attn.transpose(1, 2)).reshape(-1, d, *self.window)
            outs.append(torch.relu(feat))
        return self.proj(torch.cat(outs, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self, "bmm_batch", None):
            return self._forward_bmm(x)
        splits = torch.split(x, self.split, dim=1)
        outs = []
        feat = splits[0]
        for i, qkv in enumerate(self.qkvs):
            if i > 0:
                feat = feat + splits[i]
            q, k, v = qkv(feat).split([self.key_dim, self.key_dim, self.d], dim=1)
            q = self.dws[i](q).reshape(-1, self.key_dim, self.tokens)
            k = k.reshape(-1, self.key_dim, self.tokens)
            v = v.reshape(-1, self.d, self.tokens)
            attn = (torch.matmul(q.transpose(1, 2), k) + self.biases[i]).softmax(dim=-1)
            feat = torch.matmul(v, attn.transpose(1, 2)).reshape(-1, self.d, *self.window)
            outs.append(torch.relu(feat))
        return self.proj(torch.cat(outs, dim=1))


def _scaled_conv(dw: nn.Module, scale: float) -> nn.Module:
    """dw(q) * scale as one conv when dw is already a plain (folded) conv; exact for scale 1/4."""
    if not isinstance(dw, nn.Conv2d):
        return nn.Sequential(dw, _Scale(scale))
    conv = nn.Conv2d(
        dw.in_channels, dw.out_channels, dw.kernel_size, dw.stride, dw.padding, groups=dw.groups, dtype=dw.weight.dtype
    )
    with torch.no_grad():
        conv.weight.copy_(dw.weight * scale)
        conv.bias.copy_((dw.bias if dw.bias is not None else torch.zeros_like(conv.bias)) * scale)
    return conv


class _Scale(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class StaticLocalWindowAttention(nn.Module):
    """Windows cut with constant slices and stacked on the batch axis; `batch` is fixed."""

    def windows(self) -> int:
        """How many windows the attention runs on (per image)."""
        (h, w), (wh, ww) = self.resolution, self.window
        if h <= wh and w <= ww:
            return 1
        return -(-h // wh) * -(-w // ww)

    def __init__(self, src: LocalWindowAttention, batch: int = 1):
        super().__init__()
        self.resolution, self.window, self.batch = src.resolution, src.window, batch
        self.attn = StaticCascadedGroupAttention(src.attn, src.window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (wh, ww) = self.resolution, self.window
        if h <= wh and w <= ww:
            return self.attn(x)
        pad_b, pad_r = (wh - h % wh) % wh, (ww - w % ww) % ww
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        nh, nw = (h + pad_b) // wh, (w + pad_r) // ww
        windows = [x[:, :, i * wh : (i + 1) * wh, j * ww : (j + 1) * ww] for i in range(nh) for j in range(nw)]
        y = self.attn(torch.cat(windows, dim=0))
        b = self.batch
        y = [y[k * b : (k + 1) * b] for k in range(nh * nw)]  # slices: one op each, no split
        rows = [torch.cat([y[j] for j in range(i * nw, (i + 1) * nw)], dim=3) for i in range(nh)]
        out = torch.cat(rows, dim=2)
        return out[:, :, :h, :w] if pad_b or pad_r else out


ATTENTION_TYPES = (LiteMLA, CascadedGroupAttention, LocalWindowAttention,
                   StaticLiteMLA, StaticCascadedGroupAttention, StaticLocalWindowAttention)


def attention_scopes(model: nn.Module) -> list[str]:
    """The qualified names of the outermost attention modules in `model` (trained or static): what a
    target leaves out of quantisation when the attention is what breaks it."""
    found: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, ATTENTION_TYPES) and not any(name.startswith(f"{f}.") for f in found):
            found.append(name)
    return found
