"""Running a fixed-input image model on a photo of any size: overlapping tiles, blended back.

An artifact has one input size. A super-resolution model is run on a larger photo tile by tile, the
tiles overlapping by `overlap` input pixels and blended with linear ramps across each overlap (so no
tile edge shows as a seam); a smaller photo is padded (edge pixels repeated) to the input size and
the output cropped. The generated app code (edgekit/bundle) tiles the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DEFAULT_OVERLAP = 16


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` covering 0..length, consecutive tiles overlapping by at least
    `overlap` (the last one flush with the end)."""
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def _ramp(n: int, rise: int, fall: int) -> np.ndarray:
    """1 in the middle, rising over the first `rise` and falling over the last `fall` samples (never 0)."""
    w = np.ones(n)
    if rise:
        w[:rise] = np.arange(1, rise + 1) / (rise + 1)
    if fall:
        w[n - fall:] = np.minimum(w[n - fall:], np.arange(fall, 0, -1) / (fall + 1))
    return w


def run_tiled(run: Callable[[np.ndarray], np.ndarray], image: np.ndarray, tile: tuple[int, int], scale: int,
              overlap: int = DEFAULT_OVERLAP) -> np.ndarray:
    """`run` ((1, 3, th, tw) -> (1, 3, scale*th, scale*tw)) over a (3, H, W) image: (3, scale*H, scale*W)."""
    th, tw = tile
    _, h, w = image.shape
    padded = np.pad(image, ((0, 0), (0, max(0, th - h)), (0, max(0, tw - w))), mode="edge")
    ph, pw = padded.shape[1:]
    ys, xs = tile_starts(ph, th, overlap), tile_starts(pw, tw, overlap)
    out = np.zeros((3, ph * scale, pw * scale))
    weight = np.zeros((ph * scale, pw * scale))
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            result = np.asarray(run(np.ascontiguousarray(padded[None, :, y:y + th, x:x + tw])), dtype=np.float64)[0]
            # ramps only where this tile overlaps a neighbour
            top = (ys[i - 1] + th - y) * scale if i else 0
            bottom = (y + th - ys[i + 1]) * scale if i + 1 < len(ys) else 0
            left = (xs[j - 1] + tw - x) * scale if j else 0
            right = (x + tw - xs[j + 1]) * scale if j + 1 < len(xs) else 0
            wt = np.outer(_ramp(th * scale, top, bottom), _ramp(tw * scale, left, right))
            region = (slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale))
            out[(slice(None), *region)] += result * wt
            weight[region] += wt
    return (out / weight)[:, : h * scale, : w * scale].astype(np.float32)


def tile_count(size: tuple[int, int], tile: tuple[int, int], overlap: int = DEFAULT_OVERLAP) -> int:
    return len(tile_starts(max(size[0], tile[0]), tile[0], overlap)) * \
        len(tile_starts(max(size[1], tile[1]), tile[1], overlap))
