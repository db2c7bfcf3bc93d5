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


STAND_INS = ("plain", "trained-like")


def stand_in_kind(source: dict) -> str:
    """Which stand-in a manifest's `source` records ("plain" for artifacts made before there were two)."""
    return (source.get("stand_in") or {}).get("kind", "plain")


def source_model(variant: Variant, size: Size, weights: Path | None, stand_in: str = "plain") -> tuple[nn.Module, dict]:
    """The PyTorch model an artifact comes from: the checkpoint, or the reproducible random stand-in
    (its BatchNorm statistics estimated on all the built-in photos: see calibration/images.py), plain
    or trained-like (per-channel activation ranges spread 100x, as trained EfficientViT's are:
    edgekit/models/init.py)."""
    import torch

    from edgekit.calibration.images import image_batch, stand_in_images
    from edgekit.artifacts import sha256
    from edgekit.checkpoints import shipped_weights, shipped_weights_note
    from edgekit.models import build_model

    torch.manual_seed(STAND_IN_SEED)
    model = build_model(variant, size)
    if stand_in not in STAND_INS:
        from edgekit.errors import EdgekitError

        raise EdgekitError(f"--stand-in {stand_in!r}: choose {' or '.join(STAND_INS)}")
    shipped = shipped_weights(variant) if weights is None else None
    if shipped is not None and stand_in != "plain":
        from edgekit.errors import EdgekitError

        raise EdgekitError(f"--stand-in: {variant.name} has trained weights (edgekit's own); there is no stand-in")
    weights = weights if shipped is None else shipped
    if weights is not None:
        if stand_in != "plain":
            from edgekit.errors import EdgekitError

            raise EdgekitError("--stand-in is for running without a checkpoint: drop it, or drop --weights")
        from edgekit.checkpoints import load_weights

        loaded = load_weights(model, weights, variant)
        file = Path(loaded["file"])
        return model, {"weights": str(file.resolve()), "sha256": sha256(file), "format": loaded["format"],
                       "layout": loaded["layout"], **({"given": str(Path(weights).resolve())}
                                                      if file != Path(weights) else {}),
                       **({"shipped": shipped_weights_note(shipped)} if shipped is not None else {})}
    from edgekit.models.init import calibrated_random_init, spread_channel_ranges

    paths = stand_in_images()
    images = image_batch(variant, size, paths)
    calibrated_random_init(model, images, seed=STAND_IN_SEED)
    described = {"kind": "plain"}
    if stand_in == "trained-like":
        described = spread_channel_ranges(model, images, seed=STAND_IN_SEED)
    return model, {
        "weights": None,
        "stand_in": {"seed": STAND_IN_SEED, "bn_statistics_from": [p.name for p in paths], **described},
        "warning": RANDOM_WEIGHTS_WARNING + (" (the trained-like stand-in: channel ranges spread 100x)"
                                             if stand_in == "trained-like" else ""),
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
