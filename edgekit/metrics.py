"""How far one model's outputs are from another's: the numbers every verification reports."""

from __future__ import annotations

import math

import numpy as np


def compare(reference: np.ndarray, output: np.ndarray) -> dict:
    """Errors of `output` against `reference`, both (N, classes[, H, W]) logits.

    max_rel is max |diff| / max |reference| (per-element relative errors explode near zero logits);
    PSNR uses the reference's peak-to-peak range as the signal; argmax agreement is per pixel for
    segmentation and top-1 per image for classification.
    """
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    finite = bool(np.isfinite(out).all())
    diff = np.abs(out - ref)
    mse = float(np.mean(diff**2)) if finite else math.inf
    peak = float(ref.max() - ref.min())
    return {
        "finite": finite,
        "max_abs": float(diff.max()) if finite else math.inf,
        "max_rel": float(diff.max() / max(np.abs(ref).max(), 1e-30)) if finite else math.inf,
        "psnr_db": (math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)) if finite else 0.0,
        "argmax_agreement": float(np.mean(ref.argmax(axis=1) == out.argmax(axis=1))),
    }
