"""MIT EfficientViT (B0-B3 and L1-L3): classification and segmentation.

Paper: "EfficientViT: Multi-Scale Linear Attention for High-Resolution Dense Prediction"
(Cai, Li, Hu, Gan, Han; ICCV 2023), on-device version in ../shared/papers/.
Upstream: github.com/mit-han-lab/efficientvit (Apache-2.0). This is an independent implementation;
module and attribute names follow upstream exactly so that the authors' published checkpoints load
strictly (`backbone.stages.2.op_list.1.context_module.main.qkv.conv.weight`, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgekit.models.fusion import fuse_conv_bn

BN_EPS = 1e-5
# upstream efficientvit/models/nn/act.py: "gelu" is partial(nn.GELU, approximate="tanh") (the L series)
GELU = functools.partial(nn.GELU, approximate="tanh")

# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------


class ConvLayer(nn.Module):
    """Conv2d (same padding) -> optional BatchNorm -> optional activation (upstream `ConvLayer`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        use_bias: bool = False,
        norm: bool = True,
        act: type[nn.Module] | None = None,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=use_bias,
        )
        self.norm = nn.BatchNorm2d(out_channels, eps=BN_EPS) if norm else None
        self.act = act() if act is not None else None

    def fuse(self) -> ConvLayer:
        """Fold the BatchNorm into the conv (in place); the layer keeps its activation."""
        if self.norm is not None:
            self.conv = fuse_conv_bn(self.conv, self.norm)
            self.norm = None
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class LinearLayer(nn.Module):
    """Flatten -> Linear -> optional LayerNorm -> optional activation (upstream `LinearLayer`)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        use_bias: bool = True,
        layer_norm: bool = False,
        act: type[nn.Module] | None = None,
    ):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=use_bias)
        self.norm = nn.LayerNorm(out_features) if layer_norm else None
        self.act = act() if act is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, start_dim=1)
        x = self.linear(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class OpSequential(nn.Module):
    """A list of ops applied in order; upstream names its container `op_list`."""

    def __init__(self, ops: Sequence[nn.Module | None]):
        super().__init__()
        self.op_list = nn.ModuleList([op for op in ops if op is not None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class ResidualBlock(nn.Module):
    """`main(x) + x` when `residual`, else `main(x)`."""

    def __init__(self, main: nn.Module, residual: bool):
        super().__init__()
        self.main = main
        self.shortcut = nn.Identity() if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.main(x)
        return out + self.shortcut(x) if self.shortcut is not None else out


class UpSampleLayer(nn.Module):
    """Fixed-factor interpolation; the official seg head uses bicubic, align_corners=False."""

    def __init__(self, factor: int, mode: str = "bicubic"):
        super().__init__()
        self.factor = factor
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.factor, mode=self.mode, align_corners=False)


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------


class DSConv(nn.Module):
    """Depthwise 3x3 (BN, act) -> pointwise 1x1 (BN)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: type[nn.Module]):
        super().__init__()
        self.depth_conv = ConvLayer(in_channels, in_channels, 3, stride, groups=in_channels, act=act)
        self.point_conv = ConvLayer(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand -> 3x3 depthwise -> 1x1 project.

    `fewer_norm` (stage 3/4 downsampling and EfficientViT local blocks): the first two convs carry a
    bias and no BatchNorm; only the projection is normalised.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: float,
        act: type[nn.Module],
        fewer_norm: bool = False,
    ):
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.inverted_conv = ConvLayer(in_channels, mid, 1, use_bias=fewer_norm, norm=not fewer_norm, act=act)
        self.depth_conv = ConvLayer(
            mid, mid, 3, stride, groups=mid, use_bias=fewer_norm, norm=not fewer_norm, act=act
        )
        self.point_conv = ConvLayer(mid, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


class FusedMBConv(nn.Module):
    """3x3 conv expand (BN, act) -> 1x1 project (BN): upstream `FusedMBConv` (the L series' stages 1-2
    and segmentation heads). `fewer_norm`: the first conv carries a bias and no BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 act: type[nn.Module], fewer_norm: bool = False):
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.spatial_conv = ConvLayer(in_channels, mid, 3, stride, use_bias=fewer_norm, norm=not fewer_norm, act=act)
        self.point_conv = ConvLayer(mid, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.spatial_conv(x))


class ResBlock(nn.Module):
    """3x3 conv (BN, act) -> 3x3 conv (BN): upstream `ResBlock` (the L series' stage 0)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: type[nn.Module],
                 fewer_norm: bool = False):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, stride, use_bias=fewer_norm, norm=not fewer_norm, act=act)
        self.conv2 = ConvLayer(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class LiteMLA(nn.Module):
    """Lightweight multi-scale linear attention.

    qkv 1x1 conv; one extra scale from a 5x5 depthwise + grouped 1x1 aggregation; ReLU linear attention
    over 2x heads (original + aggregated tokens); 1x1 projection with BatchNorm.
    """

    def __init__(self, channels: int, dim: int, scales: Sequence[int] = (5,), eps: float = 1.0e-15):
        super().__init__()
        heads = channels // dim
        total_dim = heads * dim
        self.dim = dim
        self.eps = eps
        self.qkv = ConvLayer(channels, 3 * total_dim, 1, norm=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(
                    3 * total_dim, 3 * total_dim, scale, padding=scale // 2, groups=3 * total_dim, bias=False
                ),
                nn.Conv2d(3 * total_dim, 3 * total_dim, 1, groups=3 * heads, bias=False),
            )
            for scale in scales
        )
        self.kernel_func = nn.ReLU()
        self.proj = ConvLayer(total_dim * (1 + len(scales)), channels, 1)

    def _split_heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, h, w = qkv.shape
        qkv = qkv.reshape(b, -1, 3 * self.dim, h * w)
        q, k, v = qkv[:, :, : self.dim], qkv[:, :, self.dim : 2 * self.dim], qkv[:, :, 2 * self.dim :]
        return self.kernel_func(q), self.kernel_func(k), v

    def relu_linear_att(self, qkv: torch.Tensor) -> torch.Tensor:
        b, _, h, w = qkv.shape
        q, k, v = self._split_heads(qkv)
        # A row of ones appended to v makes the last output row the normaliser sum_j k_j . q.
        v = F.pad(v, (0, 0, 0, 1), mode="constant", value=1.0)
        out = torch.matmul(torch.matmul(v, k.transpose(-1, -2)), q)
        out = out[:, :, :-1] / (out[:, :, -1:] + self.eps)
        return out.reshape(b, -1, h, w)

    def relu_quadratic_att(self, qkv: torch.Tensor) -> torch.Tensor:
        b, _, h, w = qkv.shape
        q, k, v = self._split_heads(qkv)
        att = torch.matmul(k.transpose(-1, -2), q)
        att = att / (att.sum(dim=2, keepdim=True) + self.eps)
        return torch.matmul(v, att).reshape(b, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        qkv = torch.cat([qkv, *(op(qkv) for op in self.aggreg)], dim=1)
        h, w = qkv.shape[-2:]
        # Upstream switches to the quadratic form when there are no more tokens than the head dim.
        out = self.relu_linear_att(qkv) if h * w > self.dim else self.relu_quadratic_att(qkv)
        return self.proj(out)


class EfficientViTBlock(nn.Module):
    """Residual LiteMLA (context) followed by a residual MBConv (local)."""

    def __init__(self, channels: int, dim: int, expand_ratio: float, act: type[nn.Module]):
        super().__init__()
        self.context_module = ResidualBlock(LiteMLA(channels, dim), residual=True)
        self.local_module = ResidualBlock(
            MBConv(channels, channels, 1, expand_ratio, act, fewer_norm=True), residual=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))


# ----------------------------------------------------------------------------------------------
# Backbone and heads
# ----------------------------------------------------------------------------------------------


class EfficientViTBackbone(nn.Module):
    def __init__(
        self,
        width_list: Sequence[int],
        depth_list: Sequence[int],
        dim: int,
        expand_ratio: float = 4,
        act: type[nn.Module] = nn.Hardswish,
        in_channels: int = 3,
    ):
        super().__init__()
        stem: list[nn.Module] = [ConvLayer(in_channels, width_list[0], 3, 2, act=act)]
        stem += [
            ResidualBlock(DSConv(width_list[0], width_list[0], 1, act), residual=True)
            for _ in range(depth_list[0])
        ]
        self.input_stem = OpSequential(stem)

        stages: list[nn.Module] = []
        channels = width_list[0]
        for width, depth in zip(width_list[1:3], depth_list[1:3]):
            blocks = []
            for i in range(depth):
                stride = 2 if i == 0 else 1
                blocks.append(ResidualBlock(MBConv(channels, width, stride, expand_ratio, act), residual=stride == 1))
                channels = width
            stages.append(OpSequential(blocks))
        for width, depth in zip(width_list[3:], depth_list[3:]):
            blocks = [ResidualBlock(MBConv(channels, width, 2, expand_ratio, act, fewer_norm=True), residual=False)]
            channels = width
            blocks += [EfficientViTBlock(channels, dim, expand_ratio, act) for _ in range(depth)]
            stages.append(OpSequential(blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {"stage0": (x := self.input_stem(x))}
        for i, stage in enumerate(self.stages, 1):
            features[f"stage{i}"] = x = stage(x)
        features["stage_final"] = x
        return features


class EfficientViTLargeBackbone(nn.Module):
    """The L series (upstream `EfficientViTLargeBackbone`, default block_list res, fmb, fmb, mb, att;
    expand 1, 4, 4, 4, 6; fewer_norm on stages 3-4; GELU): stage 0 is the stride-2 stem conv and ResBlocks,
    each later stage a stride-2 block with 4x the stage's expansion (an MBConv where the stage is not
    conv-only) and then `depth` FusedMBConv, MBConv or EfficientViT blocks. Upstream names everything
    under `stages` (`backbone.stages.0.op_list.0.conv.weight`, ...), unlike the B series' `input_stem`."""

    BLOCKS = ("res", "fmb", "fmb", "mb", "att")
    EXPAND = (1, 4, 4, 4, 6)
    FEWER_NORM = (False, False, False, True, True)

    def __init__(self, width_list: Sequence[int], depth_list: Sequence[int], dim: int = 32,
                 act: type[nn.Module] = GELU, in_channels: int = 3):
        super().__init__()
        stage0: list[nn.Module] = [ConvLayer(in_channels, width_list[0], 3, 2, act=act)]
        stage0 += [ResidualBlock(ResBlock(width_list[0], width_list[0], 1, act, self.FEWER_NORM[0]), residual=True)
                   for _ in range(depth_list[0])]
        stages: list[nn.Module] = [OpSequential(stage0)]
        channels = width_list[0]
        for i, (width, depth) in enumerate(zip(width_list[1:], depth_list[1:]), start=1):
            kind, expand, fewer = self.BLOCKS[i], self.EXPAND[i], self.FEWER_NORM[i]
            first = FusedMBConv if kind == "fmb" else MBConv
            blocks = [ResidualBlock(first(channels, width, 2, expand * 4, act, fewer_norm=fewer), residual=False)]
            channels = width
            for _ in range(depth):
                if kind == "att":
                    blocks.append(EfficientViTBlock(channels, dim, expand, act))
                else:
                    block = (FusedMBConv if kind == "fmb" else MBConv)(channels, channels, 1, expand, act,
                                                                      fewer_norm=fewer)
                    blocks.append(ResidualBlock(block, residual=True))
            stages.append(OpSequential(blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {}
        for i, stage in enumerate(self.stages):
            features[f"stage{i}"] = x = stage(x)
        features["stage_final"] = x
        return features


class ClsHead(OpSequential):
    """1x1 conv (BN, act) -> global average pool -> Linear + LayerNorm + act -> Linear."""

    def __init__(self, in_channels: int, width_list: Sequence[int], n_classes: int, act: type[nn.Module]):
        super().__init__(
            [
                ConvLayer(in_channels, width_list[0], 1, act=act),
                nn.AdaptiveAvgPool2d(1),
                LinearLayer(width_list[0], width_list[1], use_bias=False, layer_norm=True, act=act),
                LinearLayer(width_list[1], n_classes, use_bias=True),
            ]
        )


class SegHead(nn.Module):
    """Fuses stage4/3/2 (strides 32/16/8) by addition at stride 8, MBConv middle, 1x1 classifier."""

    FEATURES = ("stage4", "stage3", "stage2")
    STRIDES = (32, 16, 8)
    HEAD_STRIDE = 8

    def __init__(
        self,
        in_channel_list: Sequence[int],
        head_width: int,
        head_depth: int,
        expand_ratio: float,
        final_expand: float | None,
        n_classes: int,
        act: type[nn.Module],
        upsample_mode: str = "bicubic",
        middle_op: str = "mbconv",
    ):
        super().__init__()
        inputs: list[nn.Module] = []
        for in_channels, stride in zip(in_channel_list, self.STRIDES):
            factor = stride // self.HEAD_STRIDE
            proj = ConvLayer(in_channels, head_width, 1)
            inputs.append(proj if factor == 1 else OpSequential([proj, UpSampleLayer(factor, upsample_mode)]))
        self.input_ops = nn.ModuleList(inputs)
        middle = {"mbconv": MBConv, "fmbconv": FusedMBConv}[middle_op]  # the L series' heads: fmbconv
        self.middle = OpSequential(
            [
                ResidualBlock(middle(head_width, head_width, 1, expand_ratio, act), residual=True)
                for _ in range(head_depth)
            ]
        )
        out_width = head_width * (final_expand or 1)
        self.output_ops = nn.ModuleList(
            [
                OpSequential(
                    [
                        None if final_expand is None else ConvLayer(head_width, out_width, 1, act=act),
                        ConvLayer(out_width, n_classes, 1, use_bias=True, norm=False),
                    ]
                )
            ]
        )

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        fused = sum(op(features[key]) for key, op in zip(self.FEATURES, self.input_ops))
        return self.output_ops[0](self.middle(fused))


class EfficientViTCls(nn.Module):
    def __init__(self, backbone: EfficientViTBackbone, head: ClsHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)["stage_final"])


class EfficientViTSeg(nn.Module):
    """Outputs class logits at 1/8 of the input resolution, like the official models."""

    def __init__(self, backbone: EfficientViTBackbone, head: SegHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


# ----------------------------------------------------------------------------------------------
# Construction from a registry config
# ----------------------------------------------------------------------------------------------


def build_efficientvit_mit(config: dict, n_classes: int, task: str) -> nn.Module:
    """Build from a registry config: {"width_list", "depth_list", "dim", "head": {...}}, and for the
    L series "backbone": "large" (GELU throughout, as upstream's L models)."""
    model = _build(config, n_classes, task)
    # upstream's model zoos (cls_model_zoo.py, seg_model_zoo.py) call set_norm_eps(model, 1e-7) for
    # every L model: all BatchNorms and LayerNorms; the B series keep PyTorch's 1e-5
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.LayerNorm):
            m.eps = config.get("norm_eps", m.eps)
    return model


def _build(config: dict, n_classes: int, task: str) -> nn.Module:
    large = config.get("backbone") == "large"
    act = GELU if large else nn.Hardswish
    if large:
        backbone = EfficientViTLargeBackbone(config["width_list"], config["depth_list"], config["dim"])
    else:
        backbone = EfficientViTBackbone(config["width_list"], config["depth_list"], config["dim"])
    head_cfg = dict(config["head"])
    if task == "cls":
        head = ClsHead(config["width_list"][-1], head_cfg["width_list"], n_classes, act)
        return EfficientViTCls(backbone, head)
    if task == "seg":
        in_channels = [config["width_list"][i] for i in (4, 3, 2)]
        head = SegHead(
            in_channels,
            head_cfg["head_width"],
            head_cfg["head_depth"],
            head_cfg["expand_ratio"],
            head_cfg["final_expand"],
            n_classes,
            act,
            middle_op=head_cfg.get("middle_op", "mbconv"),
        )
        return EfficientViTSeg(backbone, head)
    raise ValueError(f"unknown task {task!r}")
