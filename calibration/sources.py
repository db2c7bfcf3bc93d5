"""Calibration sources: a folder of images, an .npy batch, or the built-in photographs.

Every source yields float32 NCHW batches already preprocessed the way the variant expects. When more
samples are asked for than there are images, the extra ones are deterministic random crops and
flips of the originals (seeded), so two exports with the same arguments calibrate identically.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.calibration.images import calibration_images, describe, image_files, load_rgb, preprocess, rgb_sha256
from edgekit.errors import EdgekitError
from edgekit.registry import Size, Variant

SEED = 0
MIN_CROP = 0.6  # augmented samples keep at least 60% of each side


@dataclass(frozen=True)
class CalibrationSet:
    data: np.ndarray  # (N, 3, H, W) float32, normalised
    source: str  # "builtin", a folder or an .npy path
    originals: int  # how many distinct images it came from
    images: tuple[dict, ...] = ()  # each original: name, sha256 (file), rgb_sha256 (pixels, None if unknown)

    def record(self) -> dict:
        """What the manifest keeps: enough to rebuild the set and to refuse verifying on it."""
        return {"source": self.source, "samples": len(self.data), "originals": self.originals,
                "images": list(self.images)}


def _folder_images(folder: Path) -> list[Path]:
    if not folder.exists():
        raise EdgekitError(f"calibration folder not found: {folder}")
    if not folder.is_dir():
        raise EdgekitError(f"--calibration {folder} is neither a folder of images nor an .npy file")
    return image_files(folder)


def _augment(image, rng: random.Random):
    from PIL import Image

    w, h = image.size
    cw, ch = int(w * rng.uniform(MIN_CROP, 1.0)), int(h * rng.uniform(MIN_CROP, 1.0))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    image = image.crop((left, top, left + cw, top + ch))
    return image.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def _from_images(paths: list[Path], variant: Variant, size: Size, num: int) -> np.ndarray:
    images = [load_rgb(p) for p in paths]
    rng = random.Random(SEED)
    samples = [preprocess(im, variant, size) for im in images[:num]]
    i = 0
    while len(samples) < num:
        samples.append(preprocess(_augment(images[i % len(images)], rng), variant, size))
        i += 1
    return np.stack(samples).astype(np.float32)


def _from_npy(path: Path, variant: Variant, size: Size, num: int) -> tuple[np.ndarray, list[dict]]:
    """uint8 (N, H, W, 3) RGB photos (preprocessed here), or float32 (N, 3, H, W) already normalised;
    and a record of each photo (its pixels' sha256 where it is a photo)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise EdgekitError(f"cannot read calibration batch {path}: {e}") from e
    if arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[-1] == 3 and len(arr):
        from PIL import Image

        photos = [Image.fromarray(a) for a in arr]
        batch = np.stack([preprocess(im, variant, size) for im in photos])
        records = [{"name": f"{path.name}[{i}]", "sha256": None, "rgb_sha256": rgb_sha256(im)}
                   for i, im in enumerate(photos)]
    elif arr.dtype == np.float32 and arr.shape[1:] == (3, *size) and len(arr):
        batch = arr
        records = [{"name": f"{path.name}[{i}]", "sha256": None, "rgb_sha256": None} for i in range(len(arr))]
    else:
        raise EdgekitError(
            f"calibration batch {path} has shape {arr.shape} {arr.dtype}; expected uint8 (N, H, W, 3) RGB "
            f"or float32 (N, 3, {size[0]}, {size[1]}) normalised"
        )
    reps = -(-num // len(batch))
    used = min(num, len(batch))
    return np.ascontiguousarray(np.concatenate([batch] * reps)[:num]), records[:used]


def calibration_set(variant: Variant, size: Size, source: str | Path | None = None, num: int = 8) -> CalibrationSet:
    """The calibration samples. Built in: the calibration photos (never a verification photo), then
    seeded crops and flips of them."""
    if num <= 0:
        raise EdgekitError(f"--num-calibration must be positive (got {num})")
    if source is None or source == "builtin":
        paths = calibration_images(variant.dataset)[:num]
        return CalibrationSet(_from_images(paths, variant, size, num), "builtin", len(paths),
                              tuple(describe(p) for p in paths))
    path = Path(source)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise EdgekitError(f"calibration batch not found: {path}")
        data, records = _from_npy(path, variant, size, num)
        return CalibrationSet(data, str(path), len(records), tuple(records))
    paths = _folder_images(path)[:num]
    return CalibrationSet(_from_images(paths, variant, size, num), str(path), len(paths),
                          tuple(describe(p) for p in paths))


def calibration_from_record(variant: Variant, size: Size, record: dict | None) -> CalibrationSet | None:
    """The calibration set an artifact was made with, rebuilt from its manifest's record (the
    sources are deterministic), or None for an artifact that was not calibrated."""
    if record is None:
        return None
    return calibration_set(variant, size, record["source"], record["samples"])
