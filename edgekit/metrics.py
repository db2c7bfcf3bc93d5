"""How far one model's outputs are from another's: the numbers every verification reports.

The headline is SQNR per image: the power of the reference logits over the power of the error,
10 log10(sum ref^2 / sum (out - ref)^2), in dB. Unlike a peak-based PSNR (peak-to-peak range
squared over the mean squared error), it does not stay high while the class decisions change.
Segmentation also reports the share of output pixels keeping their class; classification, top-1
agreement and top-5 agreement (the share of the reference's five best classes that are among the
output's five best). Super-resolution reports its own terms: PSNR-Y of the output image against
PyTorch's (both as 8-bit pixels) and the share of 8-bit values within 1 of PyTorch's. A peak-based PSNR is kept, labelled as such, for comparison with old reports.
"""

from __future__ import annotations

import math
import statistics

import numpy as np


def sqnr_db(reference: np.ndarray, output: np.ndarray) -> float:
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if not np.isfinite(out).all():
        return -math.inf
    noise = float(np.sum((out - ref) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return math.inf
    return 10 * math.log10(max(signal, 1e-300) / noise)


def _top5_overlap(ref: np.ndarray, out: np.ndarray) -> float:
    k = min(5, ref.shape[-1])
    a = set(np.argsort(-ref)[:k].tolist())
    b = set(np.argsort(-out)[:k].tolist())
    return len(a & b) / k


AGREEMENT_KIND = {"seg": "pixels keeping their class", "cls": "top-1 agreement",
                  "sr": "8-bit values within 1 of PyTorch's"}


def _image_agreement(reference: np.ndarray, output: np.ndarray) -> dict:
    """An SR output against PyTorch's, both (3, H, W) in [0, 1] (or (H, W, 3): a TFLite graph's own
    layout, which the int8 search compares in), as the pixels an app would write."""
    from edgekit.sr_metrics import psnr_y

    if not np.isfinite(output).all():
        return {"agreement": 0.0, "psnr_y_db": -math.inf}
    hwc = reference.shape[0] != 3 and reference.shape[-1] == 3
    ref8, out8 = (np.clip(np.round((a if hwc else a.transpose(1, 2, 0)) * 255), 0, 255) for a in (reference, output))
    return {"agreement": float(np.mean(np.abs(ref8 - out8) <= 1)), "psnr_y_db": psnr_y(out8, ref8, 0)}


def compare(reference: np.ndarray, output: np.ndarray, task: str | None = None,
            names: list[str] | None = None) -> dict:
    """Errors of `output` against `reference`, both (N, classes[, H, W]) logits (or, "sr", RGB images in
    [0, 1]), per image and over all of them (`task`: "seg" for per-pixel classes, "cls" for one class per
    image, "sr" for images; by default taken from the rank: 4-D outputs are segmentation maps)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    task = task or ("seg" if ref.ndim == 4 else "cls")
    names = names or [f"image {i}" for i in range(len(ref))]
    finite = bool(np.isfinite(out).all())
    per_image = []
    for name, r, o in zip(names, ref, out):
        row = {"name": name, "sqnr_db": sqnr_db(r, o),
               "max_abs": float(np.abs(o - r).max()) if np.isfinite(o).all() else math.inf}
        if task == "sr":
            row.update(_image_agreement(r, o))
        elif task == "seg":
            row["agreement"] = float(np.mean(r.argmax(axis=0) == o.argmax(axis=0)))
        else:
            row["agreement"] = float(r.argmax() == o.argmax())
            row["top5_agreement"] = _top5_overlap(r, o)
        per_image.append(row)
    diff = np.abs(out - ref)
    mse = float(np.mean(diff**2)) if finite else math.inf
    peak = float(ref.max() - ref.min())
    sqnrs = [row["sqnr_db"] for row in per_image]
    result = {
        "finite": finite,
        "images": per_image,
        "sqnr_db_median": statistics.median(sqnrs),
        "sqnr_db_min": min(sqnrs),
        "max_abs": float(diff.max()) if finite else math.inf,
        "max_rel": float(diff.max() / max(np.abs(ref).max(), 1e-30)) if finite else math.inf,
        "agreement": float(np.mean([row["agreement"] for row in per_image])),
        "agreement_min": min(row["agreement"] for row in per_image),
        "agreement_kind": AGREEMENT_KIND.get(task, "top-1 agreement"),
        "psnr_peak_db": (math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)) if finite else 0.0,
    }
    if task == "sr":
        psnrs = [row["psnr_y_db"] for row in per_image]
        result |= {"psnr_y_db_median": statistics.median(psnrs), "psnr_y_db_min": min(psnrs)}
    elif task != "seg":
        result["top5_agreement"] = float(np.mean([row["top5_agreement"] for row in per_image]))
    return result


def failures(result: dict, tolerance, task: str, hold_agreement: bool = True) -> list[str]:
    """What the result misses of `tolerance` (a targets.base.Tolerance), each as a short phrase.
    `hold_agreement`: whether the pixel-agreement bar applies (it binds trained weights: a random
    stand-in's classes are nearly tied, so its agreement understates what a trained model keeps)."""
    missed = []
    if not result["finite"]:
        missed.append("non-finite outputs (inf/NaN)")
    if tolerance.max_rel is not None and result["max_rel"] > tolerance.max_rel:
        missed.append(f"max rel {result['max_rel']:.2g} > {tolerance.max_rel:.2g}")
    if tolerance.sqnr_min_db is not None and result["sqnr_db_min"] < tolerance.sqnr_min_db:
        worst = min(result["images"], key=lambda r: r["sqnr_db"])
        missed.append(f"SQNR {result['sqnr_db_min']:.1f} dB on {worst['name']} < {tolerance.sqnr_min_db:g} dB")
    if tolerance.sqnr_median_db is not None and result["sqnr_db_median"] < tolerance.sqnr_median_db:
        missed.append(f"median SQNR {result['sqnr_db_median']:.1f} dB < {tolerance.sqnr_median_db:g} dB")
    if (hold_agreement and task == "seg" and tolerance.pixel_agreement is not None
            and result["agreement_min"] < tolerance.pixel_agreement):
        worst = min(result["images"], key=lambda r: r["agreement"])
        missed.append(f"{worst['agreement']:.1%} of pixels keep their class on {worst['name']} "
                      f"< {tolerance.pixel_agreement:.0%}")
    return missed
