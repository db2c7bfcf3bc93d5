"""Model zoo: build any registry variant as a torch module (torch only, no timm/torchvision)."""

from __future__ import annotations

import torch.nn as nn

from edgekit.registry import Size, Variant


def build_model(variant: Variant, resolution: Size | None = None) -> nn.Module:
    """A randomly initialised model of `variant`, in eval mode.

    `resolution` matters only for the Microsoft models, whose attention-bias tables are sized for
    the input resolution at construction time (as upstream).
    """
    resolution = resolution or variant.resolution
    if variant.task == "sr":
        from edgekit.models.efficientvit_sr import build_efficientvit_sr

        model = build_efficientvit_sr(variant.config)
    elif variant.family == "mit":
        from edgekit.models.efficientvit_mit import build_efficientvit_mit

        model = build_efficientvit_mit(variant.config, variant.num_classes, variant.task)
    elif variant.family == "msra":
        from edgekit.models.efficientvit_msra import build_efficientvit_msra

        model = build_efficientvit_msra(variant.config, variant.num_classes, resolution)
    else:
        raise ValueError(f"unknown family {variant.family!r}")
    return model.eval()
