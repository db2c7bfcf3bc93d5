"""Microsoft EfficientViT (M0-M5): classification with cascaded group attention.

Paper: "EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention"
(Liu, Peng, Zheng, Yang, Hu, Yuan; CVPR 2023), in ../shared/papers/.
Upstream: github.com/microsoft/Cream, folder EfficientViT (MIT license). This is an independent
implementation; module names follow upstream so `{"model": state_dict}` checkpoints load strictly,
including the int64 `attention_bias_idxs` buffers.

Differences from upstream, none of which change a checkpoint or an output:
- no cached gather of the attention biases in eval mode (upstream's `ab` cache outlives a
  `load_state_dict` and then silently uses the old biases); the gather happens in `forward`.
- the input resolution may be rectangular; it is still fixed at construction, as upstream.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgekit.models.fusion import fuse_bn_linear, fuse_conv_bn

Size = tuple[int, int]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Channel rounding of timm's SqueezeExcite (round_limit=0: never bumped up)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class Conv2d_BN(nn.Sequential):  # noqa: N801 - upstream name
    def __init__(
        self,
        a: int,
        b: int,
        ks: int = 1,
        stride: int = 1,
        pad: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)

    def fuse(self) -> nn.Conv2d:
        return fuse_conv_bn(self.c, self.bn)


class BN_Linear(nn.Sequential):  # noqa: N801 - upstream name
    def __init__(self, a: int, b: int, bias: bool = True, std: float = 0.02):
        super().__init__()
        self.add_module("bn", nn.BatchNorm1d(a))
        self.add_module("l", nn.Linear(a, b, bias=bias))
        nn.init.trunc_normal_(self.l.weight, std=std)
        if bias:
            nn.init.constant_(self.l.bias, 0)

    def fuse(self) -> nn.Linear:
        return fuse_bn_linear(self.bn, self.l)


class SqueezeExcite(nn.Module):
    """timm's SEModule layout (fc1 -> ReLU -> fc2 -> sigmoid gate), as the checkpoints store it."""

    def __init__(self, channels: int, rd_ratio: float = 0.25):
        super().__init__()
        rd = make_divisible(channels * rd_ratio)
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=True)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class Residual(nn.Module):
    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


class FFN(nn.Module):
    def __init__(self, ed: int, h: int):
        super().__init__()
        self.pw1 = Conv2d_BN(ed, h)
        self.act = nn.ReLU()
        self.pw2 = Conv2d_BN(h, ed, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        hid = dim * 4
        self.conv1 = Conv2d_BN(dim, hid)
        self.act = nn.ReLU()
        self.conv2 = Conv2d_BN(hid, hid, 3, 2, 1, groups=hid)
        self.se = SqueezeExcite(hid, 0.25)
        self.conv3 = Conv2d_BN(hid, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.se(self.act(self.conv2(self.act(self.conv1(x))))))


def relative_offset_index(window: Size) -> tuple[int, torch.Tensor]:
    """(number of distinct |dy|,|dx| offsets, index table N x N) in upstream's enumeration order."""
    points = list(itertools.product(range(window[0]), range(window[1])))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(off, len(offsets)))
    return len(offsets), torch.tensor(idxs, dtype=torch.int64).view(len(points), len(points))


class CascadedGroupAttention(nn.Module):
    """Each head sees one channel split plus the previous head's output (the cascade)."""

    def __init__(
        self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, window: Size, kernels: Sequence[int]
    ):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.qkvs = nn.ModuleList(Conv2d_BN(dim // num_heads, key_dim * 2 + self.d) for _ in range(num_heads))
        self.dws = nn.ModuleList(
            Conv2d_BN(key_dim, key_dim, kernels[i], 1, kernels[i] // 2, groups=key_dim) for i in range(num_heads)
        )
        self.proj = nn.Sequential(nn.ReLU(), Conv2d_BN(self.d * num_heads, dim, bn_weight_init=0.0))
        n_offsets, idxs = relative_offset_index(window)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, n_offsets))
        self.register_buffer("attention_bias_idxs", idxs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        biases = self.attention_biases[:, self.attention_bias_idxs]
        splits = x.chunk(len(self.qkvs), dim=1)
        outs = []
        feat = splits[0]
        for i, qkv in enumerate(self.qkvs):
            if i > 0:
                feat = feat + splits[i]
            q, k, v = qkv(feat).split([self.key_dim, self.key_dim, self.d], dim=1)
            q = self.dws[i](q)
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)
            attn = (q.transpose(-2, -1) @ k) * self.scale + biases[i]
            attn = attn.softmax(dim=-1)
            feat = (v @ attn.transpose(-2, -1)).view(b, self.d, h, w)
            outs.append(feat)
        return self.proj(torch.cat(outs, 1))


class LocalWindowAttention(nn.Module):
    """CGA inside non-overlapping windows; pads the feature map to a multiple of the window."""

    def __init__(
        self,
        dim: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: float,
        resolution: Size,
        window_resolution: int,
        kernels: Sequence[int],
    ):
        super().__init__()
        self.resolution = resolution
        self.window = (min(window_resolution, resolution[0]), min(window_resolution, resolution[1]))
        self.attn = CascadedGroupAttention(dim, key_dim, num_heads, attn_ratio, self.window, kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if (h, w) != self.resolution:
            raise ValueError(f"feature map {h}x{w} does not match the resolution built for {self.resolution}")
        wh, ww = self.window
        if h <= wh and w <= ww:
            return self.attn(x)
        pad_b, pad_r = (wh - h % wh) % wh, (ww - w % ww) % ww
        x = x.permute(0, 2, 3, 1)
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // wh, pw // ww
        x = x.view(b, nh, wh, nw, ww, c).transpose(2, 3).reshape(b * nh * nw, wh, ww, c).permute(0, 3, 1, 2)
        x = self.attn(x)
        x = x.permute(0, 2, 3, 1).view(b, nh, nw, wh, ww, c).transpose(2, 3).reshape(b, ph, pw, c)
        if pad_b or pad_r:
            x = x[:, :h, :w].contiguous()
        return x.permute(0, 3, 1, 2)


class EfficientViTBlock(nn.Module):
    """Sandwich layout: DW + FFN, one attention, DW + FFN; each residual."""

    def __init__(
        self,
        ed: int,
        kd: int,
        nh: int,
        ar: float,
        resolution: Size,
        window_resolution: int,
        kernels: Sequence[int],
    ):
        super().__init__()
        self.dw0 = Residual(Conv2d_BN(ed, ed, 3, 1, 1, groups=ed, bn_weight_init=0.0))
        self.ffn0 = Residual(FFN(ed, ed * 2))
        self.mixer = Residual(LocalWindowAttention(ed, kd, nh, ar, resolution, window_resolution, kernels))
        self.dw1 = Residual(Conv2d_BN(ed, ed, 3, 1, 1, groups=ed, bn_weight_init=0.0))
        self.ffn1 = Residual(FFN(ed, ed * 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn1(self.dw1(self.mixer(self.ffn0(self.dw0(x)))))


def _dw_ffn(dim: int) -> nn.Sequential:
    return nn.Sequential(Residual(Conv2d_BN(dim, dim, 3, 1, 1, groups=dim)), Residual(FFN(dim, dim * 2)))


class EfficientViTMSRA(nn.Module):
    def __init__(
        self,
        resolution: Size = (224, 224),
        embed_dim: Sequence[int] = (64, 128, 192),
        depth: Sequence[int] = (1, 2, 3),
        num_heads: Sequence[int] = (4, 4, 4),
        kernels: Sequence[int] = (5, 5, 5, 5),
        key_dim: int = 16,
        window_size: int = 7,
        patch_size: int = 16,
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        e0 = embed_dim[0]
        self.patch_embed = nn.Sequential(
            Conv2d_BN(in_chans, e0 // 8, 3, 2, 1),
            nn.ReLU(),
            Conv2d_BN(e0 // 8, e0 // 4, 3, 2, 1),
            nn.ReLU(),
            Conv2d_BN(e0 // 4, e0 // 2, 3, 2, 1),
            nn.ReLU(),
            Conv2d_BN(e0 // 2, e0, 3, 2, 1),
        )
        res: Size = (resolution[0] // patch_size, resolution[1] // patch_size)
        stages: list[list[nn.Module]] = [[], [], []]
        for i, (ed, d, nh) in enumerate(zip(embed_dim, depth, num_heads)):
            ar = ed / (key_dim * nh)
            stages[i] += [EfficientViTBlock(ed, key_dim, nh, ar, res, window_size, kernels) for _ in range(d)]
            if i + 1 < len(embed_dim):
                # Subsample between stages: DW+FFN, PatchMerging (stride 2), DW+FFN.
                stages[i + 1] += [_dw_ffn(ed), PatchMerging(ed, embed_dim[i + 1]), _dw_ffn(embed_dim[i + 1])]
                res = ((res[0] - 1) // 2 + 1, (res[1] - 1) // 2 + 1)
        self.blocks1 = nn.Sequential(*stages[0])
        self.blocks2 = nn.Sequential(*stages[1])
        self.blocks3 = nn.Sequential(*stages[2])
        self.head = BN_Linear(embed_dim[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks3(self.blocks2(self.blocks1(self.patch_embed(x))))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def build_efficientvit_msra(config: dict, n_classes: int, resolution: Size) -> EfficientViTMSRA:
    return EfficientViTMSRA(resolution=resolution, num_classes=n_classes, **config)
