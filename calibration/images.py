"""The built-in photographs, split once into a calibration set and a verification set that never
overlap, and each variant's own preprocessing (RGB, resize/crop, /255, ImageNet mean/std).

Every photo has one role in int8, whatever the variant: the calibration photos are what int8 models
are calibrated on; the verification photos are what every artifact is checked on, and never a
calibration photo. Segmentation variants are verified on street scenes, classifiers on objects (and
one street scene with a car, an ImageNet class).

The random stand-in (used when no checkpoint is given) estimates its BatchNorm statistics on all
the built-in photos: that is its training set, as a trained model has its own. Estimated on the four
calibration photos alone, the stand-in was ill-conditioned on photos unlike them (m0-cls on the
aquarium photo: logits 18x their usual size, PyTorch fp32 only 17.7 dB from float64), which no
trained network is, and that chaos, not the conversion, would have set every number.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.registry import Size, Variant

BUILTIN_DIR = Path(__file__).parent / "images"
# what a folder or a glob of photos is read for: the formats a file named alone is read in too
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
IMAGE_KINDS = "/".join(IMAGE_SUFFIXES)
CLS_CROP_RATIO = 0.875  # resize the short side to size/0.875, then centre-crop (ImageNet eval)

# Calibration: two scenes (a Cityscapes-style street, an ADE20K-style room) and two objects.
CALIBRATION = ("city.png", "indoor.jpg", "girl.png", "cat.jpg")
# Verification, per kind of dataset; none of these is ever a calibration photo.
VERIFICATION = {
    "scenes": ("mit-fig-1.jpeg", "mit-fig-5.jpeg", "mit-fig-6.jpeg", "mit-fig-7.jpeg"),
    "objects": ("bear.jpeg", "mit-fig-2.jpeg", "mit-fig-3.jpeg", "mit-fig-1.jpeg"),
}
# super-resolution is judged on every verification photo: any photo is its own label
VERIFICATION["photos"] = tuple(dict.fromkeys((*VERIFICATION["scenes"], *VERIFICATION["objects"])))
KIND = {"cityscapes": "scenes", "ade20k": "scenes", "imagenet": "objects", "div2k": "photos"}


def _kind(dataset: str) -> str:
    if dataset not in KIND:
        raise EdgekitError(f"no built-in photos for the dataset {dataset!r}")
    return KIND[dataset]


def calibration_images(dataset: str) -> list[Path]:
    """The calibration photos, those of the dataset's kind first (they come first in a calibration
    set smaller than the whole list)."""
    first = ("girl.png", "cat.jpg") if _kind(dataset) == "objects" else ("city.png", "indoor.jpg")
    return [BUILTIN_DIR / n for n in (*first, *(n for n in CALIBRATION if n not in first))]


def verification_images(dataset: str) -> list[Path]:
    return [BUILTIN_DIR / n for n in VERIFICATION[_kind(dataset)]]


def stand_in_images() -> list[Path]:
    """Every built-in photo, once: what the random stand-in's BatchNorm statistics come from."""
    names = dict.fromkeys((*CALIBRATION, *(n for kind in VERIFICATION.values() for n in kind)))
    return [BUILTIN_DIR / n for n in names]


def image_files(folder: Path) -> list[Path]:
    """The photos in a folder (sorted), or a one-line error."""
    folder = Path(folder)
    if not folder.exists():
        raise EdgekitError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise EdgekitError(f"{folder} is not a folder of images")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise EdgekitError(f"image folder {folder} has no {IMAGE_KINDS} images")
    return paths


def expand_images(given) -> list[Path]:
    """The photos a user named: files, folders (their IMAGE_SUFFIXES images, sorted) and glob patterns
    (`shots/*.jpg`, as a shell that did not expand them would pass them), in the order given, each
    once; a name that is none of these is a one-line error."""
    import glob

    found: list[Path] = []
    for item in map(str, given):
        path = Path(item)
        if path.is_dir():
            found += image_files(path)
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True)
                             if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not matches:
                raise EdgekitError(f"no {IMAGE_KINDS} images match {item}")
            found += matches
        else:
            raise EdgekitError(f"{item} not found")
    return list(dict.fromkeys(found))


def load_rgb(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise EdgekitError(f"cannot read image {path}: {e}") from e


def rgb_sha256(image) -> str:
    """Of the decoded RGB pixels (and the size): the same photo whether it came from a file or an
    .npy batch, so overlap between calibration and verification is found either way."""
    h = hashlib.sha256(f"{image.size[0]}x{image.size[1]}".encode())
    h.update(np.asarray(image.convert("RGB"), dtype=np.uint8).tobytes())
    return h.hexdigest()


def describe(path: Path) -> dict:
    """A photo as manifests record it: its name, the file's sha256, the pixels' sha256."""
    from edgekit.artifacts import sha256

    return {"name": Path(path).name, "sha256": sha256(Path(path)), "rgb_sha256": rgb_sha256(load_rgb(path))}


def preprocess(image, variant: Variant, size: Size) -> np.ndarray:
    """(3, H, W) float32, normalised; seg: resize to HxW; cls: short-side resize + centre crop; SR: the
    photo's low-resolution version (sr_input) at HxW."""
    from PIL import Image

    h, w = size
    if variant.task == "sr":
        return sr_input(image, variant.scale, size)
    if variant.task == "seg":
        image = image.resize((w, h), Image.BILINEAR)
    else:
        image = center_crop(image, size)
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - np.array(variant.mean, dtype=np.float32)) / np.array(variant.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def low_resolution(hr: np.ndarray, scale: int) -> np.ndarray:
    """(H/scale, W/scale, 3) in 0..255, as the SR benchmark sets make their inputs: MATLAB's antialiased
    bicubic, rounded to 8 bits (the HR cropped to a multiple of `scale` first)."""
    from edgekit.sr_metrics import imresize

    h, w = hr.shape[:2]
    hr = np.asarray(hr, dtype=np.float64)[: h - h % scale, : w - w % scale]
    return np.clip(np.round(imresize(hr, 1 / scale)), 0, 255)


def sr_input(image, scale: int, size: Size) -> np.ndarray:
    """(3, H, W) float32 in [0, 1]: the centre HxW of the photo's low-resolution version (the photo first
    enlarged, bicubic, when that is smaller than HxW)."""
    from PIL import Image

    h, w = size
    grow = max(h * scale / image.size[1], w * scale / image.size[0], 1.0)
    if grow > 1:
        image = image.resize((math.ceil(image.size[0] * grow), math.ceil(image.size[1] * grow)), Image.BICUBIC)
    lr = low_resolution(np.asarray(image), scale)
    top, left = (lr.shape[0] - h) // 2, (lr.shape[1] - w) // 2
    x = lr[top:top + h, left:left + w].astype(np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def center_crop(image, size: Size):
    """ImageNet evaluation: resize the short side to size/CLS_CROP_RATIO (bicubic), crop the centre."""
    from PIL import Image

    h, w = size
    scale = max(h, w) / CLS_CROP_RATIO / min(image.size)
    rw, rh = math.ceil(image.size[0] * scale), math.ceil(image.size[1] * scale)
    image = image.resize((rw, rh), Image.BICUBIC)
    left, top = (rw - w) // 2, (rh - h) // 2
    return image.crop((left, top, left + w, top + h))


def image_batch(variant: Variant, size: Size, paths: list[Path] | None = None) -> np.ndarray:
    """(N, 3, H, W) from `paths` (default: the variant's verification photos)."""
    paths = paths or verification_images(variant.dataset)
    return np.stack([preprocess(load_rgb(p), variant, size) for p in paths])
