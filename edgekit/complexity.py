"""Parameter and MAC counts, measured on the torch model (not copied from the papers).

MACs are counted by torch's FlopCounterMode over convolutions, linear layers and matmuls (attention
included) on the `meta` device, so even B3 at 1184x2368 costs no real compute. Element-wise ops,
pooling and interpolation are not counted, as in the papers' tools.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from edgekit.models import build_model
from edgekit.registry import Size, Variant


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    output_shape: tuple[int, ...]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure(variant: Variant, resolution: Size | None = None) -> Complexity:
    resolution = resolution or variant.resolution
    with torch.device("meta"):
        model = build_model(variant, resolution)
        x = torch.empty(1, 3, *resolution)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        y = model(x)
    return Complexity(count_params(model), counter.get_total_flops() // 2, tuple(y.shape))
