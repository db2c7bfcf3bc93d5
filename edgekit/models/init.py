"""A stand-in for trained weights when the user gives none: random weights whose activations have
realistic scale.

Fresh initialisations are degenerate for measurement: the Microsoft models zero-initialise the BN
gain at the end of every residual branch (their output ignores most of the network), and BatchNorm
running statistics of mean 0 / variance 1 match no real activation. Here every BN gain is drawn
around 1 and the running statistics are re-estimated on real images (as upstream's `reset_bn`
does), so folding, fp16 and quantisation see activations of the scale a trained model produces.
Reports always say when a model is this stand-in rather than a checkpoint.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

BN = nn.modules.batchnorm._BatchNorm


@torch.no_grad()
def calibrated_random_init(model: nn.Module, images: np.ndarray, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, BN):
            m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
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
