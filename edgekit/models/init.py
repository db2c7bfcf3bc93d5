"""A stand-in for trained weights when the user gives none: random weights whose activations have
realistic scale.

Fresh initialisations are degenerate for measurement: the Microsoft models zero-initialise the BN
gain at the end of every residual branch (their output ignores most of the network), and BatchNorm
running statistics of mean 0 / variance 1 match no real activation. Here BN gains are drawn around
1, except the last BN of each residual branch, whose gain is drawn small (0.1-0.3): with every
branch at full strength a deep random network is chaotic (a 1e-3 change at its input moves its
logits by tens of percent, which no trained network does), and that chaos, not the conversion,
would dominate every fp16/int8 fidelity number. Running statistics are then re-estimated on real
images (as upstream's `reset_bn` does). Reports always say when a model is this stand-in.

That "plain" stand-in has every channel alike (about 2x spread in range), which trained EfficientViT
does not: its failure under naive int8 (B1: 3.2% top-1 at W8A8 against 79.4% in float) comes from
the per-channel range spread of the MBConv/depthwise activations under per-tensor activation scales
(Trio-ViT, arXiv 2405.03882), while 8-bit weights with 16-bit activations keep it (79.3). The
"trained-like" stand-in (`spread_channel_ranges`) gives those
activations that spread: each channel c of a depthwise conv's output (MIT MBConv; the 3x3 expansion
of FusedMBConv) and of the Microsoft FFN's hidden layer gets a gain g_c, log-uniform over [0.1, 10]
(100x, both ends drawn), before its activation. The 1x1 conv reading it keeps its weights, and the
BatchNorm after that conv, re-estimated, brings its output back to its scale: the function changes
(this is a stand-in), its output scale does not, 8-bit weights cost what they cost on the plain
stand-in, and one int8 scale per activation tensor, set by the widest channel, leaves the narrow
ones a few levels. (Two other constructions were measured and dropped: compensating the gain in the
reader's weights keeps every channel's contribution but breaks 8-bit weights too, to 1-5 dB SQNR on
b0-cls, which trained EfficientViT does not do; a large constant on a few channels does the same.)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

BN = nn.modules.batchnorm._BatchNorm


RESIDUAL_GAIN = (0.1, 0.3)


def residual_branch_ends(model: nn.Module) -> set[int]:
    """ids of the last BatchNorm inside each residual branch (MIT ResidualBlock, MSRA Residual)."""
    ends = set()
    for m in model.modules():
        branch = getattr(m, "main", None) if getattr(m, "shortcut", None) is not None else None
        branch = branch if branch is not None else (m.m if type(m).__name__ == "Residual" else None)
        if branch is not None:
            bns = [b for b in branch.modules() if isinstance(b, BN)]
            if bns:
                ends.add(id(bns[-1]))
    return ends


@torch.no_grad()
def calibrated_random_init(model: nn.Module, images: np.ndarray, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    ends = residual_branch_ends(model)
    for m in model.modules():
        if isinstance(m, BN):
            low, high = RESIDUAL_GAIN if id(m) in ends else (0.75, 1.25)
            m.weight.copy_(torch.rand(m.num_features, generator=g) * (high - low) + low)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        if hasattr(m, "attention_biases"):
            m.attention_biases.copy_(torch.randn(m.attention_biases.shape, generator=g) * 0.5)
    return estimate_bn_statistics(model, images)


@torch.no_grad()
def estimate_bn_statistics(model: nn.Module, images: np.ndarray) -> nn.Module:
    """Every BatchNorm's running statistics, re-estimated over `images` (one pass in train mode for
    the BNs only, all images at once: BatchNorm1d needs a batch > 1, so a lone image is paired with its
    mirror image)."""
    for m in model.modules():
        if isinstance(m, BN):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    batch = images if len(images) > 1 else np.concatenate([images, images[..., ::-1]])
    was_training = model.training
    model.eval()
    bns = [m for m in model.modules() if isinstance(m, BN)]
    for m in bns:
        m.train()
    model(torch.from_numpy(np.ascontiguousarray(batch)))
    for m in bns:
        m.momentum = 0.1
    model.train(was_training)
    return model.eval()


TRAINED_LIKE_SPREAD = 100.0  # max/min gain across the channels of one layer


def _gains(n: int, spread: float, g: torch.Generator) -> torch.Tensor:
    """n gains log-uniform over [spread**-0.5, spread**0.5], the two extremes always drawn."""
    u = torch.rand(n, generator=g)
    if n >= 2:
        order = torch.randperm(n, generator=g)
        u[order[0]], u[order[1]] = 0.0, 1.0
    return spread ** (u - 0.5)


def spread_targets(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
    """(where, the layer whose output channels are spread, the 1x1 conv that reads them)."""
    from edgekit.models.efficientvit_mit import FusedMBConv, MBConv
    from edgekit.models.efficientvit_msra import FFN

    found = []
    for name, m in model.named_modules():
        if isinstance(m, MBConv):
            found.append((f"{name}.depth_conv", m.depth_conv, m.point_conv.conv))
        elif isinstance(m, FusedMBConv):
            found.append((f"{name}.spatial_conv", m.spatial_conv, m.point_conv.conv))
        elif isinstance(m, FFN):
            found.append((f"{name}.pw1", m.pw1, m.pw2.c))
    return found


@torch.no_grad()
def spread_channel_ranges(model: nn.Module, images: np.ndarray, seed: int = 0,
                          spread: float = TRAINED_LIKE_SPREAD) -> dict:
    """Turn a plain stand-in into the trained-like one (module docstring); returns what was done."""
    g = torch.Generator().manual_seed(seed + 1)
    layers = spread_targets(model)
    for _name, layer, _reader in layers:
        norm = layer.bn if hasattr(layer, "bn") else layer.norm
        conv = layer.c if hasattr(layer, "c") else layer.conv
        gain = _gains(conv.out_channels, spread, g)
        if norm is not None:
            norm.weight.mul_(gain)
            norm.bias.mul_(gain)
        else:  # a biased conv, no BatchNorm (MIT's fewer_norm blocks)
            conv.weight.mul_(gain.view(-1, 1, 1, 1))
            if conv.bias is not None:
                conv.bias.mul_(gain)
    estimate_bn_statistics(model, images)  # the readers' BatchNorms bring each output back to its scale
    return {"kind": "trained-like", "layers": len(layers), "gain_spread": spread,
            "where": "depthwise conv outputs (MIT MBConv), FusedMBConv expansions, Microsoft FFN hidden layers"}
