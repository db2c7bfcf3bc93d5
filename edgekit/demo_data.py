"""Small labelled sets in the datasets' real layouts, built from the built-in photos: a demo of
`edgekit eval` (`edgekit demo-data`) and the eval tests' data. Not a benchmark: the labels are a
model's own predictions (edgekit's PyTorch model, random stand-in weights unless trained ones are
given, through the eval's own preprocessing) with a share of pixels (or images) given another class
and regions set to the classes the official evaluations ignore, so a score is far from trivial and
means nothing about any model's accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgekit.accuracy import class_map
from edgekit.calibration.images import BUILTIN_DIR, load_rgb
from edgekit.datasets import CITYSCAPES_TRAIN_IDS, eval_input, imagenet_wnids
from edgekit.reference import run_images, source_model
from edgekit.registry import get_variant

SCENES = ("mit-fig-1.jpeg", "mit-fig-5.jpeg", "mit-fig-6.jpeg", "mit-fig-7.jpeg", "city.png", "indoor.jpg")
OBJECTS = ("bear.jpeg", "cat.jpg", "girl.png", "mit-fig-2.jpeg", "mit-fig-3.jpeg", "mit-fig-1.jpeg")
TRAIN_TO_ID = np.zeros(256, dtype=np.uint8)
for _id, _train in CITYSCAPES_TRAIN_IDS.items():
    TRAIN_TO_ID[_train] = _id


def _predicted(variant_name: str, size, photos) -> list[np.ndarray]:
    variant = get_variant(variant_name)
    model, _ = source_model(variant, size, None)
    out = []
    for photo in photos:
        logits = run_images(model, eval_input(photo, variant, size)[None])[0]
        out.append(class_map(logits, photo.size) if variant.task == "seg" else logits)
    return out


def _noisy(classes: np.ndarray, num_classes: int, share: float, rng) -> np.ndarray:
    """`share` of the pixels given one of the first `num_classes` classes at random."""
    flip = rng.random(classes.shape) < share
    return np.where(flip, rng.integers(0, num_classes, classes.shape), classes)


def cityscapes(root: Path, photo_size=(256, 128), model_size=(64, 128), noise=0.15, train_ids=False,
               names=SCENES[:4]) -> list[Path]:
    """leftImg8bit/val/<city>/*_leftImg8bit.png and gtFine/val/<city>/*_gtFine_labelIds.png (or
    labelTrainIds): labels are b0-seg's predictions, `noise` of the pixels flipped, a band of
    'unlabeled' (id 0) at the top and an 'ego vehicle' (id 1) box at the bottom. The label files."""
    rng = np.random.default_rng(0)
    photos = [load_rgb(BUILTIN_DIR / n).resize(photo_size, Image.BICUBIC) for n in names]
    labels = []
    for i, (photo, pred) in enumerate(zip(photos, _predicted("b0-seg", model_size, photos))):
        city = ("aachen", "bochum")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        img = root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        photo.save(img)
        classes = _noisy(pred, 19, noise, rng)
        h = classes.shape[0]
        if train_ids:
            values = classes.astype(np.uint8)
            values[: h // 8] = 255
        else:
            values = TRAIN_TO_ID[classes]
            values[: h // 8] = 0
            values[-h // 8:, : classes.shape[1] // 3] = 1
        kind = "labelTrainIds" if train_ids else "labelIds"
        lab = root / "gtFine" / "val" / city / f"{stem}_gtFine_{kind}.png"
        lab.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(values, mode="L").save(lab)
        labels.append(lab)
    return labels


def ade20k(root: Path, variant="b1-seg-ade20k", photo_size=(160, 120), model_size=(64, 64), noise=0.15,
           names=SCENES[2:]) -> list[Path]:
    """images/validation/*.jpg with annotations/validation/*.png (0 = other, ignored; 1..150)."""
    rng = np.random.default_rng(1)
    photos = [load_rgb(BUILTIN_DIR / n).resize(photo_size, Image.BICUBIC) for n in names]
    labels = []
    for i, (photo, pred) in enumerate(zip(photos, _predicted(variant, model_size, photos))):
        stem = f"ADE_val_{i + 1:08d}"
        img = root / "images" / "validation" / f"{stem}.jpg"
        img.parent.mkdir(parents=True, exist_ok=True)
        photo.save(img, quality=95)
        values = (_noisy(pred, 40, noise, rng) + 1).astype(np.uint8)  # classes neither side has stay out
        values[:, : values.shape[1] // 6] = 0
        lab = root / "annotations" / "validation" / f"{stem}.png"
        lab.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(values, mode="L").save(lab)
        labels.append(lab)
    return labels


def imagenet(root: Path, variant="m0-cls", size=(224, 224), names=OBJECTS, layout="folders") -> dict[str, int]:
    """val/<wnid>/*.JPEG (or a flat folder with labels.txt): every other image labelled with the
    model's own top-1, the others with its third class. {relative name: class}."""
    photos = [load_rgb(BUILTIN_DIR / n) for n in names]
    wnids = imagenet_wnids()
    truth = {}
    lines = []
    for i, (name, photo, logits) in enumerate(zip(names, photos, _predicted(variant, size, photos))):
        cls = int(np.argsort(-logits)[0 if i % 2 == 0 else 2])
        file = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        if layout == "folders":
            path = root / "val" / wnids[cls] / file
            rel = f"{wnids[cls]}/{file}"
        else:
            path = root / file
            rel = file
            lines.append(f"{file} {cls if i % 3 else wnids[cls]}")
        path.parent.mkdir(parents=True, exist_ok=True)
        photo.save(path, format="JPEG", quality=95)
        truth[rel] = cls
    if lines:
        (root / "labels.txt").write_text("\n".join(lines) + "\n")
    return truth


def super_resolution(root: Path, fmt: str, names=None, scale: int = 2) -> list[Path]:
    """The built-in verification photos (never trained on by edgekit's SR weights) as an SR set in `fmt`'s
    layout: HR PNGs cropped to a multiple of `scale`, and (except "hr-only") their x`scale` inputs made as
    the benchmark sets were, MATLAB-style bicubic. The HR files."""
    from edgekit.calibration.images import VERIFICATION, low_resolution

    hr_dir, lr_dir = {"sr-benchmark": ("HR", f"LR_bicubic/X{scale}"),
                      "div2k": ("DIV2K_valid_HR", f"DIV2K_valid_LR_bicubic/X{scale}"), "hr-only": (".", None)}[fmt]
    written = []
    for i, name in enumerate(names or VERIFICATION["photos"]):
        hr = np.asarray(load_rgb(BUILTIN_DIR / name))
        hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
        stem = f"{801 + i:04d}" if fmt == "div2k" else Path(name).stem
        out = root / hr_dir / f"{stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(hr).save(out)
        if lr_dir is not None:
            lr = root / lr_dir / f"{stem}x{scale}.png"
            lr.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(low_resolution(hr, scale).astype(np.uint8)).save(lr)
        written.append(out)
    return written


FORMATS = ("cityscapes", "ade20k", "imagenet", "sr-benchmark", "div2k", "hr-only")
SR_NOTE = ("A DEMO of the {format} layout, made by `edgekit demo-data` from edgekit's built-in verification photos\n"
           "(which edgekit's own SR weights were never trained on). The high-resolution images are real photos,\n"
           "so the scores are real PSNR/SSIM, but on 7 photos: a smoke test of a conversion, not a benchmark.\n")
DEMO_NOTE = ("A DEMO of the {format} layout, made by `edgekit demo-data` from edgekit's built-in photos. Its labels\n"
             "are a model's own predictions with noise added, not human annotations: scores on it show that\n"
             "`edgekit eval` runs, not how accurate any model is. Use your own validation set for that.\n")


def make(folder: Path, fmt: str) -> Path:
    """A demo set in `fmt`'s layout written to the new folder `folder` (built beside it and renamed into
    place, so an interrupted run leaves nothing), with a README.txt saying what it is."""
    import shutil
    import tempfile

    from edgekit.artifacts import check_writable
    from edgekit.errors import EdgekitError

    if fmt not in FORMATS:
        raise EdgekitError(f"--format {fmt!r}: choose {', '.join(FORMATS)}")
    folder = Path(folder)
    if folder.exists():
        raise EdgekitError(f"{folder} exists: give a new folder")
    check_writable(folder.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if fmt in ("cityscapes", "ade20k", "imagenet"):
            {"cityscapes": cityscapes, "ade20k": ade20k, "imagenet": imagenet}[fmt](tmp)
        else:
            super_resolution(tmp, fmt)
        (tmp / "README.txt").write_text((SR_NOTE if fmt not in ("cityscapes", "ade20k", "imagenet")
                                         else DEMO_NOTE).format(format=fmt))
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder

