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
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration passes
        if hasattr(m, "attention_biases"):
            m.attention_biases.copy_(torch.randn(m.attention_biases.shape, generator=g) * 0.5)
    # One pass in train mode for the BNs only, over all images at once (BatchNorm1d needs a batch > 1;
    # a lone image is paired with its mirror image).
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
