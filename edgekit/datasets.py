"""Labelled validation sets in their real layouts, found from the folder, and read as the authors'
evaluation reads them.

- Cityscapes: `leftImg8bit/val/<city>/*_leftImg8bit.png` with `gtFine/val/<city>/*_gtFine_labelIds.png`
  (label ids mapped to the 19 train ids, everything else ignored, as cityscapesScripts'
  `helpers/labels.py` does) or `*_gtFine_labelTrainIds.png` (its `createTrainIdLabelImgs` output:
  0..18, 255 ignored).
- ADE20K (SceneParsing, `ADEChallengeData2016`): `images/validation/*.jpg` with
  `annotations/validation/*.png`; 0 is "other" and ignored, 1..150 are classes 0..149.
- ImageNet: the class-folder layout (`val/<wnid>/*.JPEG`; a wnid folder is its class's index among
  the 1000 sorted wnids, so a subset of the folders works) or a flat folder of images with a
  `labels.txt` / `val.txt` list of `filename label` lines (label: class index or wnid).

Preprocessing follows the authors' evaluation scripts, read in their repositories:
- mit-han-lab/efficientvit `applications/efficientvit_seg/eval_efficientvit_seg_model.py`: the photo
  is resized to the model's input with OpenCV's `INTER_CUBIC` (Cityscapes: to its crop size; ADE20K:
  short side to 512, long side up to a multiple of 32), the label is never resized, and the logits
  are resized to the label's size (bicubic, align_corners=False) before the argmax. edgekit's
  artifacts have one fixed input, so every photo is resized to it and the report says when that
  changed a photo's size or shape.
- `applications/efficientvit_cls/eval_efficientvit_cls_model.py`: short side resized to
  ceil(size / 0.95) (bicubic), centre crop; microsoft/Cream `EfficientViT/classification/data/
  datasets.py` `build_transform`: short side to int(256 / 224 * size) (bicubic), centre crop
  (torchvision's Resize and CenterCrop, reproduced here).

Super-resolution sets (HR photos are their own labels) are found and scored by edgekit.sr_data.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.calibration.images import IMAGE_SUFFIXES
from edgekit.errors import EdgekitError
from edgekit.registry import Size, Variant
from edgekit.sr_data import LAYOUTS as SR_LAYOUTS
from edgekit.sr_data import SR_FORMATS

FORMATS = ("cityscapes", "ade20k", "imagenet", *SR_FORMATS)
IGNORE = 255  # label value of an ignored pixel, in every segmentation label map edgekit reads
LABEL_MODES = ("L", "P", "I", "I;16")
LIST_FILES = ("labels.txt", "val.txt")

# cityscapesScripts helpers/labels.py: label id -> train id (ids 0..33; -1, the licence plate, is
# ignored too); every id not listed has trainId 255 (ignoreInEval)
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                        25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
_CITY_LUT = np.full(256, IGNORE, dtype=np.uint8)
for _id, _train in CITYSCAPES_TRAIN_IDS.items():
    _CITY_LUT[_id] = _train

_LAYOUTS = {
    "cityscapes": "leftImg8bit/val/<city>/*_leftImg8bit.png with gtFine/val/<city>/*_gtFine_labelIds.png",
    "ade20k": "images/validation/*.jpg with annotations/validation/*.png",
    "imagenet": "val/<wnid>/*.JPEG class folders, or images with a labels.txt of 'filename label' lines",
    **SR_LAYOUTS,
}


@dataclass(frozen=True)
class Sample:
    name: str  # the image's path relative to the dataset folder
    image: Path
    label: Path | int  # a label map (segmentation), a class index, or the HR photo (super-resolution)


@dataclass(frozen=True)
class Dataset:
    format: str  # one of FORMATS
    root: Path
    samples: tuple[Sample, ...]
    note: str = ""  # how the labels were read (e.g. "labelTrainIds")

    def fingerprint(self) -> str:
        """sha256 over every file's relative path, size and modification time: what changes when the
        set changes, without reading every image twice."""
        h = hashlib.sha256(self.format.encode())
        for s in self.samples:
            for part in (s.image, s.label):
                if isinstance(part, Path):
                    st = part.stat()
                    h.update(f"{part.relative_to(self.root)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
                else:
                    h.update(f"label {part}\0".encode())
        return h.hexdigest()


def _images_in(folder: Path, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def _cityscapes_root(folder: Path) -> Path | None:
    for root in (folder, folder.parent.parent):  # the dataset folder, or its leftImg8bit/val
        if (root / "leftImg8bit").is_dir():
            return root
    return None


def _ade_root(folder: Path) -> Path | None:
    for root in (folder, folder / "ADEChallengeData2016"):
        if (root / "images").is_dir() and (root / "annotations").is_dir():
            return root
    return None


def _imagenet_root(folder: Path) -> Path | None:
    if (folder / "val").is_dir():
        return folder / "val"
    if any((folder / n).is_file() for n in LIST_FILES) or any(p.is_dir() for p in folder.iterdir()):
        return folder
    return None


def detect_format(folder: Path) -> str:
    from edgekit.sr_data import detect

    if (sr := detect(folder)) is not None:
        return sr
    if _cityscapes_root(folder) is not None:
        return "cityscapes"
    if _ade_root(folder) is not None:
        return "ade20k"
    if _imagenet_root(folder) is not None:
        return "imagenet"
    raise EdgekitError(f"{folder}: no dataset layout found (expected one of: "
                       + "; ".join(f"{k}: {v}" for k, v in _LAYOUTS.items()) + ")")


def _missing_labels(folder: Path, pairs: list[tuple[Path, Path]]) -> None:
    missing = [label for _, label in pairs if not label.is_file()]
    if missing:
        raise EdgekitError(f"{folder}: {len(missing)} of {len(pairs)} images have no label: "
                           f"{missing[0].relative_to(folder)} not found")


def _cityscapes(folder: Path) -> Dataset:
    root = _cityscapes_root(folder)
    images_dir = root / "leftImg8bit" / "val"
    if not images_dir.is_dir():
        raise EdgekitError(f"{root}: not a Cityscapes layout: {images_dir.relative_to(root)} not found "
                           f"({_LAYOUTS['cityscapes']})")
    images = sorted(images_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise EdgekitError(f"{images_dir}: no <city>/*_leftImg8bit.png images")
    gt = root / "gtFine" / "val"
    if not gt.is_dir():
        raise EdgekitError(f"{root}: not a Cityscapes layout: gtFine/val not found (the labels)")
    stems = [(p.parent.name, p.name[: -len("_leftImg8bit.png")]) for p in images]
    train_ids = all((gt / city / f"{stem}_gtFine_labelTrainIds.png").is_file() for city, stem in stems) and \
        not any((gt / city / f"{stem}_gtFine_labelIds.png").is_file() for city, stem in stems)
    suffix = "_gtFine_labelTrainIds.png" if train_ids else "_gtFine_labelIds.png"
    pairs = [(p, gt / city / f"{stem}{suffix}") for p, (city, stem) in zip(images, stems)]
    _missing_labels(root, pairs)
    return Dataset("cityscapes", root, tuple(Sample(str(i.relative_to(root)), i, lab) for i, lab in pairs),
                   "labelTrainIds" if train_ids else "labelIds mapped to train ids (cityscapesScripts labels.py)")


def _ade20k(folder: Path) -> Dataset:
    root = _ade_root(folder)
    images_dir, labels_dir = root / "images" / "validation", root / "annotations" / "validation"
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            raise EdgekitError(f"{root}: not an ADE20K layout: {d.relative_to(root)} not found ({_LAYOUTS['ade20k']})")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() == ".jpg")
    if not images:
        raise EdgekitError(f"{images_dir}: no .jpg images")
    pairs = [(p, labels_dir / f"{p.stem}.png") for p in images]
    _missing_labels(root, pairs)
    return Dataset("ade20k", root, tuple(Sample(str(i.relative_to(root)), i, lab) for i, lab in pairs),
                   "0 (other) ignored, 1..150 -> classes 0..149")


def imagenet_wnids() -> list[str]:
    from edgekit.labels import LABELS_DIR

    return (LABELS_DIR / "imagenet-wnids.txt").read_text().split()


def _class_index(value: str, wnids: dict[str, int], num_classes: int, where: str) -> int:
    if value in wnids:
        return wnids[value]
    try:
        index = int(value)
    except ValueError:
        raise EdgekitError(f"{where}: label {value!r} is neither a class index nor an ImageNet wnid") from None
    if not 0 <= index < num_classes:
        raise EdgekitError(f"{where}: class {index} is outside 0..{num_classes - 1}")
    return index


def _imagenet(folder: Path, num_classes: int) -> Dataset:
    root = _imagenet_root(folder)
    wnids = {w: i for i, w in enumerate(imagenet_wnids())}
    listing = next((root / n for n in LIST_FILES if (root / n).is_file()), None)
    samples = []
    if listing is not None:
        for number, line in enumerate(listing.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            where = f"{listing}:{number}"
            if len(parts) != 2:
                raise EdgekitError(f"{where}: expected 'filename label', got {line.strip()!r}")
            image = root / parts[0]
            if not image.is_file():
                raise EdgekitError(f"{where}: {parts[0]} not found")
            samples.append(Sample(parts[0], image, _class_index(parts[1], wnids, num_classes, where)))
        note = f"labels from {listing.name}"
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        if all(f.name in wnids for f in folders):
            index = {f.name: wnids[f.name] for f in folders}
            note = "class folders named by wnid (index among the 1000 sorted ImageNet wnids)"
        elif len(folders) == num_classes:
            index = {f.name: i for i, f in enumerate(folders)}
            note = "class folders in sorted order (torchvision ImageFolder)"
        else:
            odd = next(f.name for f in folders if f.name not in wnids)
            raise EdgekitError(f"{root}: class folder {odd!r} is not an ImageNet wnid, and there are {len(folders)} "
                               f"folders, not {num_classes}: the class of each folder is unknown")
        for f in folders:
            samples += [Sample(str(p.relative_to(root)), p, index[f.name]) for p in _images_in(f, (".jpeg", ".jpg",
                                                                                                  ".png"))]
    if not samples:
        raise EdgekitError(f"{root}: no labelled images ({_LAYOUTS['imagenet']})")
    return Dataset("imagenet", root, tuple(samples), note)


def open_dataset(folder: Path, fmt: str = "auto", num_classes: int = 1000, limit: int | None = None) -> Dataset:
    """The labelled images in `folder` (sorted), or a one-line error naming what is missing."""
    folder = Path(folder)
    if not folder.exists():
        raise EdgekitError(f"dataset folder not found: {folder}")
    if not folder.is_dir():
        raise EdgekitError(f"{folder} is not a folder (give the dataset's folder)")
    if fmt not in ("auto", *FORMATS):
        raise EdgekitError(f"--format must be auto or one of {', '.join(FORMATS)} (got {fmt!r})")
    if limit is not None and limit < 1:
        raise EdgekitError(f"--limit must be at least 1 (got {limit})")
    fmt = detect_format(folder) if fmt == "auto" else fmt
    if fmt in SR_FORMATS:
        from edgekit.sr_data import samples

        data = Dataset(fmt, folder, tuple(Sample(name, lr, hr) for name, lr, hr in samples(folder, fmt)),
                       "HR photos as labels" + (", inputs made with MATLAB-style bicubic" if fmt == "hr-only" else ""))
    elif fmt == "cityscapes":
        if _cityscapes_root(folder) is None:
            raise EdgekitError(f"{folder}: not a Cityscapes layout ({_LAYOUTS['cityscapes']})")
        data = _cityscapes(folder)
    elif fmt == "ade20k":
        if _ade_root(folder) is None:
            raise EdgekitError(f"{folder}: not an ADE20K layout ({_LAYOUTS['ade20k']})")
        data = _ade20k(folder)
    else:
        if _imagenet_root(folder) is None:
            raise EdgekitError(f"{folder}: not an ImageNet layout ({_LAYOUTS['imagenet']})")
        data = _imagenet(folder, num_classes)
    if limit is not None:
        data = Dataset(data.format, data.root, data.samples[:limit], data.note)
    _check_files(data)
    return data


def _header(path: Path, what: str):
    """(size, mode) from a file's header (PIL reads no pixels here), or a one-line error."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except (UnidentifiedImageError, OSError) as e:
        raise EdgekitError(f"cannot read {what} {path}: {e}") from e


def _check_files(data: Dataset) -> None:
    """Before any work: every image readable, every label map one channel and its image's size."""
    from edgekit.sr_data import check_pair

    for s in data.samples:
        size, _ = _header(s.image, "image")
        if data.format in SR_FORMATS:
            check_pair(size, _header(s.label, "HR image")[0], 2, s.image, s.label)
        elif isinstance(s.label, Path):
            label_size, mode = _header(s.label, "label")
            if mode not in LABEL_MODES:
                raise EdgekitError(f"{s.label}: a label map must be one channel (got mode {mode})")
            if label_size != size:
                raise EdgekitError(f"{s.label}: label is {label_size[0]}x{label_size[1]}, its image "
                                   f"{size[0]}x{size[1]} (a label must be its image's size)")


def check_matches(data: Dataset, variant: Variant) -> None:
    if (data.format in SR_FORMATS) != (variant.task == "sr"):
        what = "super-resolution" if variant.task == "sr" else f"{variant.dataset} classes"
        raise EdgekitError(f"{variant.name} predicts {what}; {data.root} is in {data.format}'s layout "
                           f"({'a super-resolution set' if variant.task == 'sr' else 'pass its validation set'})")
    if variant.task == "sr":
        return
    if data.format != variant.dataset:
        raise EdgekitError(f"{variant.name} predicts {variant.dataset} classes; {data.root} is in "
                           f"{data.format}'s layout (pass the {variant.dataset} validation set)")


def load_label(sample: Sample, fmt: str, image_size: tuple[int, int]) -> np.ndarray:
    """A segmentation label map as (H, W) uint8 classes, IGNORE where not scored; one line if it
    cannot be read or is not the photo's size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(sample.label) as im:
            if im.mode not in LABEL_MODES:
                raise EdgekitError(f"{sample.label}: a label map must be one channel (got mode {im.mode})")
            raw = np.asarray(im)
    except (UnidentifiedImageError, OSError) as e:
        raise EdgekitError(f"cannot read label {sample.label}: {e}") from e
    if (raw.shape[1], raw.shape[0]) != tuple(image_size):
        raise EdgekitError(f"{sample.label}: label is {raw.shape[1]}x{raw.shape[0]}, its image "
                           f"{image_size[0]}x{image_size[1]} (a label must be its image's size)")
    raw = raw.astype(np.int64)
    if fmt == "cityscapes":
        if sample.label.name.endswith("_labelTrainIds.png"):
            return np.where((raw >= 0) & (raw < 19), raw, IGNORE).astype(np.uint8)
        return _CITY_LUT[np.clip(raw, 0, 255)]
    return np.where((raw >= 1) & (raw <= 150), raw - 1, IGNORE).astype(np.uint8)  # ADE20K


def cv2_bicubic(rgb: np.ndarray, size: Size) -> np.ndarray:
    """(H, W, 3) uint8 resized to `size` (H, W) as OpenCV's INTER_CUBIC does, which the authors'
    segmentation eval uses: the Keys cubic with a = -0.75 on half-pixel centres, no antialiasing,
    saturated back to uint8. PyTorch's bicubic (align_corners=False) is that same kernel."""
    import torch
    import torch.nn.functional as F

    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]
    y = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)[0]
    return np.clip(np.rint(y.numpy()), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def short_side(variant: Variant, size: int) -> int:
    """The short side a classifier's photo is resized to before the centre crop, per family."""
    if variant.family == "msra":
        return int((256 / 224) * size)  # Cream build_transform, literally
    return math.ceil(size / 0.95)  # efficientvit eval_efficientvit_cls_model.py, crop_ratio 0.95


def torchvision_crop(image, variant: Variant, size: Size):
    """torchvision's Resize(short side, BICUBIC) then CenterCrop(size) on a PIL image."""
    from PIL import Image

    h, w = size
    short = short_side(variant, max(h, w))
    width, height = image.size
    if width <= height:
        new = (short, int(short * height / width))
    else:
        new = (int(short * width / height), short)
    image = image.resize(new, Image.BICUBIC)
    top, left = round((new[1] - h) / 2.0), round((new[0] - w) / 2.0)  # torchvision's int(round(.))
    return image.crop((left, top, left + w, top + h))


def eval_input(image, variant: Variant, size: Size) -> np.ndarray:
    """(3, H, W) float32, normalised, from a PIL RGB photo, as the authors' evaluation feeds it."""
    if variant.task == "seg":
        rgb = cv2_bicubic(np.asarray(image, dtype=np.uint8), size)
    else:
        rgb = np.asarray(torchvision_crop(image, variant, size), dtype=np.uint8)
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.array(variant.mean, dtype=np.float32)) / np.array(variant.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocessing_note(variant: Variant, size: Size) -> str:
    h, w = size
    if variant.task == "sr":
        return (f"each input in [0, 1], run whole when it is {h}x{w}, else in overlapping {h}x{w} tiles blended "
                f"back (smaller: padded); PSNR/SSIM on Y, {variant.scale} pixels cropped at each border")
    if variant.task == "seg":
        return (f"each photo resized to the model's {h}x{w} input with bicubic (OpenCV INTER_CUBIC, as the authors' "
                "eval), logits resized to the label's size with bicubic before the argmax")
    short = short_side(variant, max(h, w))
    source = "Cream build_transform (256/224)" if variant.family == "msra" else "the authors' crop ratio 0.95"
    return f"short side resized to {short} with bicubic, centre crop {h}x{w} ({source})"


_CITY_LABEL_IDS = np.zeros(256, dtype=np.uint8)
for _id, _train in CITYSCAPES_TRAIN_IDS.items():
    _CITY_LABEL_IDS[_train] = _id


def write_prediction(folder: Path, fmt: str, sample: Sample, prediction: np.ndarray) -> None:
    """One prediction in the dataset's own submission format, for its official tools:
    Cityscapes: `<city>/<name>_leftImg8bit.png` of label ids (what cityscapesScripts'
    evalPixelLevelSemanticLabeling reads); ADE20K: `<name>.png` of 1..150 (SceneParsing);
    ImageNet: a `predictions.txt` line `name top1 .. top5` (class indices); super-resolution: the 8-bit
    output as `<HR name>.png` (the HR file's own name, as SR benchmark results are shared)."""
    from PIL import Image

    if fmt in SR_FORMATS:
        Image.fromarray(np.asarray(prediction, dtype=np.uint8)).save(folder / f"{Path(sample.label).stem}.png")
        return
    if fmt == "imagenet":
        top = np.argsort(-np.asarray(prediction, dtype=np.float64))[:5]
        with open(folder / "predictions.txt", "a") as f:
            f.write(f"{sample.name} {' '.join(map(str, top))}\n")
        return
    if fmt == "cityscapes":
        out = folder / sample.image.parent.name / sample.image.name
        values = _CITY_LABEL_IDS[prediction]
    else:
        out = folder / f"{sample.image.stem}.png"
        values = (prediction + 1).astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(out)
