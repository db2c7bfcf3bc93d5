"""BatchNorm folding arithmetic shared by the fusable modules' `fuse()` methods (eval statistics)."""

from __future__ import annotations

import torch
import torch.nn as nn


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """In float64, so the folded fp32 weights are rounded once, not after each step."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> nn.Conv2d:
    """conv followed by bn, as one conv with bias."""
    scale, shift = _bn_scale_shift(bn)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        dtype=conv.weight.dtype,
        device=conv.weight.device,
    )
    fused.weight.copy_(conv.weight.double() * scale[:, None, None, None])
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
    fused.bias.copy_(bias * scale + shift)
    return fused


@torch.no_grad()
def fuse_bn_linear(bn: nn.modules.batchnorm._BatchNorm, linear: nn.Linear) -> nn.Linear:
    """bn followed by linear (the Microsoft classifier head), as one linear."""
    scale, shift = _bn_scale_shift(bn)
    fused = nn.Linear(
        linear.in_features, linear.out_features, bias=True, dtype=linear.weight.dtype, device=linear.weight.device
    )
    weight = linear.weight.double()
    fused.weight.copy_(weight * scale[None, :])
    bias = linear.bias.double() if linear.bias is not None else torch.zeros(linear.out_features, dtype=torch.float64)
    fused.bias.copy_(weight @ shift + bias)
    return fused
