"""The reference side of every comparison: the PyTorch model an artifact comes from, and running
PyTorch on images. Export, verify, inspect and predict all use these; none imports another command.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.registry import Size, Variant

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

STAND_IN_SEED = 0
RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: no --weights given; this artifact shows the conversion, not a trained model"


def source_model(variant: Variant, size: Size, weights: Path | None) -> tuple[nn.Module, dict]:
    """The PyTorch model an artifact comes from: the checkpoint, or the reproducible random stand-in
    (its BatchNorm statistics estimated on all the built-in photos: see calibration/images.py)."""
    import torch

    from edgekit.calibration.images import image_batch, stand_in_images
    from edgekit.artifacts import sha256
    from edgekit.models import build_model

    torch.manual_seed(STAND_IN_SEED)
    model = build_model(variant, size)
    if weights is not None:
        from edgekit.checkpoints import load_weights

        loaded = load_weights(model, weights, variant)
        file = Path(loaded["file"])
        return model, {"weights": str(file.resolve()), "sha256": sha256(file), "format": loaded["format"],
                       "layout": loaded["layout"], **({"given": str(Path(weights).resolve())}
                                                      if file != Path(weights) else {})}
    from edgekit.models.init import calibrated_random_init

    paths = stand_in_images()
    calibrated_random_init(model, image_batch(variant, size, paths), seed=STAND_IN_SEED)
    return model, {
        "weights": None,
        "stand_in": {"seed": STAND_IN_SEED, "bn_statistics_from": [p.name for p in paths]},
        "warning": RANDOM_WEIGHTS_WARNING,
    }


def run_images(model: nn.Module, images: np.ndarray, dtype: torch.dtype | None = None) -> np.ndarray:
    """Outputs for each image, one at a time (deploy forms have a static batch of 1). Another dtype
    runs on a copy: the caller's model is never converted in place."""
    import torch

    dtype = dtype or torch.float32
    if dtype != torch.float32:
        model = copy.deepcopy(model).to(dtype)
    model.eval()
    with torch.no_grad():
        outs = [model(torch.from_numpy(np.ascontiguousarray(img[None])).to(dtype)).float().numpy() for img in images]
    return np.concatenate(outs)
