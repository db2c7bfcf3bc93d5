"""Image loading and each variant's own preprocessing (RGB, resize/crop, /255, ImageNet mean/std)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.registry import Size, Variant

BUILTIN_DIR = Path(__file__).parent / "images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CLS_CROP_RATIO = 0.875  # resize the short side to size/0.875, then centre-crop (ImageNet eval)
# Which built-in photos suit which dataset: scenes for segmentation, objects for classification.
BUILTIN_BY_DATASET = {
    "cityscapes": ("city.png", "indoor.jpg"),
    "ade20k": ("indoor.jpg", "city.png"),
    "imagenet": ("cat.jpg", "bear.jpeg", "girl.png"),
}


def builtin_images(dataset: str | None = None) -> list[Path]:
    names = BUILTIN_BY_DATASET.get(dataset or "", ())
    paths = [BUILTIN_DIR / n for n in names] if names else sorted(_image_files(BUILTIN_DIR))
    return paths


def _image_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]


def load_rgb(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise EdgekitError(f"cannot read image {path}: {e}") from e


def preprocess(image, variant: Variant, size: Size) -> np.ndarray:
    """(3, H, W) float32, normalised; seg: resize to HxW; cls: short-side resize + centre crop."""
    from PIL import Image

    h, w = size
    if variant.task == "seg":
        image = image.resize((w, h), Image.BILINEAR)
    else:
        scale = max(h, w) / CLS_CROP_RATIO / min(image.size)
        rw, rh = math.ceil(image.size[0] * scale), math.ceil(image.size[1] * scale)
        image = image.resize((rw, rh), Image.BICUBIC)
        left, top = (rw - w) // 2, (rh - h) // 2
        image = image.crop((left, top, left + w, top + h))
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - np.array(variant.mean, dtype=np.float32)) / np.array(variant.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def image_batch(variant: Variant, size: Size, paths: list[Path] | None = None) -> np.ndarray:
    """(N, 3, H, W) from `paths` (default: the built-in photos suited to the variant's dataset)."""
    paths = paths or builtin_images(variant.dataset)
    return np.stack([preprocess(load_rgb(p), variant, size) for p in paths])
