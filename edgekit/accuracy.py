"""Task accuracy: mIoU over a segmentation set, top-1/top-5 over a classification set, and a paired
bootstrap interval for the difference between two models scored on the same images.

Segmentation follows cityscapesScripts' `evalPixelLevelSemanticLabeling.py` (and the SceneParsing
definition for ADE20K): one confusion over the whole set, not a mean of per-image IoUs. Per class,
IoU = TP / (TP + FP + FN) counted over every scored pixel (ignored label pixels count nowhere); a
class absent from both the labels and the predictions has no IoU and is left out of the mean. Each
image keeps only its per-class TP and TP+FP+FN (they add up over images), so memory does not grow
with the image size and the bootstrap can resample images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def class_map(logits, size: tuple[int, int], rows: int = 64) -> np.ndarray:
    """The (H, W) classes of (C, h, w) logits resized to `size` (W, H) the way the official
    segmentation evaluation does: bicubic (align_corners=False) on the logits, then the argmax, not
    the 1/8-resolution argmax blown up into blocks. PyTorch's bicubic is separable, so it is applied as
    one matrix per axis (its weights: interpolating the identity), a band of output rows at a time, so
    an ADE20K map (150 classes) at photo size needs no gigabytes."""
    import torch
    import torch.nn.functional as F

    width, height = size
    x = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    _, h, w = x.shape

    def weights(n_in: int, n_out: int) -> torch.Tensor:  # (n_out, n_in)
        eye = torch.eye(n_in)[None, None]
        return F.interpolate(eye, size=(n_out, n_in), mode="bicubic", align_corners=False)[0, 0]

    wh, ww = weights(h, height), weights(w, width)
    out = np.empty((height, width), dtype=np.int64)
    for top in range(0, height, rows):
        band = torch.einsum("ry,cyx,qx->crq", wh[top:top + rows], x, ww)
        out[top:top + rows] = band.argmax(dim=0).numpy()
    return out


def segmentation_counts(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore: int = 255) -> np.ndarray:
    """(3, C) int64 for one image: TP, TP+FP+FN (the union) and the labelled pixels of each class."""
    scored = label != ignore
    p, t = pred[scored].astype(np.int64), label[scored].astype(np.int64)
    confusion = np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes,
                                                                                               num_classes)
    tp = np.diag(confusion)
    return np.stack([tp, confusion.sum(0) + confusion.sum(1) - tp, confusion.sum(1)])


def topk_hits(logits: np.ndarray, target: int) -> np.ndarray:
    """(2,) int64 for one image: top-1 hit, top-5 hit."""
    order = np.argsort(-np.asarray(logits, dtype=np.float64))
    return np.array([order[0] == target, target in order[:5]], dtype=np.int64)


def miou(counts: np.ndarray) -> tuple[float, np.ndarray]:
    """(mIoU, per-class IoU with NaN for classes absent from labels and predictions) from summed
    (3, C) counts."""
    tp, union = counts[0].astype(np.float64), counts[1].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return (float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")), iou


def pixel_accuracy(counts: np.ndarray) -> float:
    labelled = counts[2].sum()
    return float(counts[0].sum() / labelled) if labelled else float("nan")


METRICS = {"seg": "mIoU", "cls": "top-1", "sr": "PSNR-Y"}


def drop_units(metric: str) -> tuple[float, str]:
    """How a drop in `metric` is counted: mIoU and top-1 in points (0.01), PSNR in dB."""
    return (1.0, "dB") if metric == "PSNR-Y" else (100.0, "points")


@dataclass
class Scores:
    """Per-image scores of one model over a set: (N, 3, C) segmentation counts, (N, 2) top-k hits, or
    (N, 2) PSNR-Y (dB) and SSIM-Y (super-resolution: the set's value is their mean, as SR papers report)."""

    task: str
    per_image: np.ndarray

    @property
    def metric(self) -> str:
        return METRICS[self.task]

    def value(self, index: np.ndarray | None = None) -> float:
        rows = self.per_image if index is None else self.per_image[index]
        if self.task == "seg":
            return miou(rows.sum(0))[0]
        return float(rows[:, 0].mean())

    def secondary(self) -> tuple[str, float]:
        if self.task == "sr":
            return "SSIM-Y", float(self.per_image[:, 1].mean())
        if self.task == "seg":
            return "pixel accuracy", pixel_accuracy(self.per_image.sum(0))
        return "top-5", float(self.per_image[:, 1].mean())

    def per_class(self, names: list[str]) -> dict[str, float | None] | None:
        if self.task != "seg":
            return None
        _, iou = miou(self.per_image.sum(0))
        return {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)}


def paired_bootstrap(a: Scores, b: Scores, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile interval of value(a) - value(b), resampling images with replacement (the same
    images for both models in each resample: the models are paired by image)."""
    n = len(a.per_image)
    rng = np.random.default_rng(seed)
    deltas = np.empty(samples)
    if a.task == "seg":
        # each resample's summed counts: (resample weights) @ (per-image counts)
        fa, fb = a.per_image.reshape(n, -1), b.per_image.reshape(n, -1)
        shape = a.per_image.shape[1:]
        for k in range(samples):
            weights = np.bincount(rng.integers(0, n, n), minlength=n)
            deltas[k] = miou((weights @ fa).reshape(shape))[0] - miou((weights @ fb).reshape(shape))[0]
    else:
        diff = (a.per_image[:, 0] - b.per_image[:, 0]).astype(np.float64)
        for k in range(samples):
            deltas[k] = diff[rng.integers(0, n, n)].mean()
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return float(lo), float(hi)
