"""`edgekit predict`: run an artifact on the user's photos on this machine and show what it does.

The artifact runs through its target's host runner (the target table), on each photo preprocessed
exactly as its manifest says (the variant's resize or centre crop, /255, mean/std). Segmentation
writes, per photo, `<stem>-overlay.png` (the photo blended with the dataset's colours, with a legend
of the classes covering most of it) and `<stem>-classes.png` (the class of every pixel as a
palette-indexed PNG: pixel value = class index, shown in the dataset's colours). Classification
writes `<stem>-top5.png` (the photo as the model saw it, beside its five best classes and their
softmax probabilities). Super-resolution writes the upscaled photo and a comparison (edgekit.predict_sr).
A random stand-in's pictures say on them that the classes mean nothing, and an
artifact that FAILED verification says so on every picture and in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.accuracy import class_map
from edgekit.errors import EdgekitError
from edgekit.pictures import banner as _banner
from edgekit.pictures import font as _font
from edgekit.pictures import save_png as _save_png

DEFAULT_OUTPUT = Path("edgekit-predictions")
OVERLAY_ALPHA = 0.55  # weight of the class colours over the photo
MAX_SIDE = 2048  # pictures larger than this are drawn at this size
LEGEND_CLASSES = 8
RANDOM_BANNER = "RANDOM WEIGHTS: no checkpoint was given, so these classes mean nothing"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PredictOptions:
    artifact: Path
    images: tuple[Path, ...]
    output: Path = DEFAULT_OUTPUT
    top: int = 5
    skip_unreadable: bool = False  # a photo that cannot be read is skipped with its line, not the batch's end
    hr: Path | None = None  # super-resolution: the photos' high-resolution originals (a file, or a folder by stem)


def _fit(image):
    from PIL import Image

    scale = MAX_SIDE / max(image.size)
    if scale >= 1:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)


def _legend(canvas, entries: list[tuple[str, tuple[int, int, int], float]]) -> None:
    """Colour swatches with class names and their share of the picture, bottom left."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas, "RGBA")
    size = max(12, canvas.width // 80)
    font = _font(size)
    lines = [f"{name}  {share:.0%}" for name, _, share in entries]
    width = max(draw.textbbox((0, 0), line, font=font)[2] for line in lines) + 3 * size
    height = len(lines) * (size + 6) + size
    top = canvas.height - height - size
    draw.rectangle((size // 2, top, size // 2 + width, top + height), fill=(0, 0, 0, 170))
    for i, (line, (_, rgb, _)) in enumerate(zip(lines, entries)):
        y = top + size // 2 + i * (size + 6)
        draw.rectangle((size, y, 2 * size, y + size), fill=tuple(rgb), outline=(255, 255, 255))
        draw.text((2.5 * size, y - 1), line, fill=(255, 255, 255), font=font)


def _segmentation_pictures(photo, logits: np.ndarray, labels: list[str], palette: list[list[int]],
                           banners: list[str]):
    """(overlay RGB image, class-index PNG, the classes by share) for one photo's (C, h, w) logits."""
    from PIL import Image

    photo = _fit(photo)
    # the model saw the photo stretched to its input; its output maps back the same way
    classes = class_map(logits, photo.size).astype(np.uint8)
    mask = Image.fromarray(classes, mode="L")
    indexed = mask.convert("P")
    flat = [c for rgb in palette for c in rgb]
    indexed.putpalette(flat + [0, 0, 0] * (256 - len(palette)))
    colours = np.asarray(palette, dtype=np.float32)[np.asarray(mask)]
    blend = (1 - OVERLAY_ALPHA) * np.asarray(photo, dtype=np.float32) + OVERLAY_ALPHA * colours
    overlay = Image.fromarray(np.clip(blend, 0, 255).astype(np.uint8), mode="RGB")
    counts = np.bincount(classes.ravel(), minlength=len(labels)) / classes.size
    shares = [(labels[k], tuple(palette[k]), float(counts[k])) for k in np.argsort(-counts) if counts[k] > 0]
    _legend(overlay, shares[:LEGEND_CLASSES])
    for text in reversed(banners):
        overlay = _banner(overlay, text)
    return overlay, indexed, shares


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _classification_picture(seen, top: list[tuple[str, float]], banners: list[str]):
    """The model's input picture beside its best classes with probability bars."""
    from PIL import Image, ImageDraw

    side = max(seen.size)
    seen = seen.resize((side * 448 // side, seen.height * 448 // side), Image.BICUBIC) if side < 448 else seen
    size = 18
    font = _font(size)
    panel_w = 520
    canvas = Image.new("RGB", (seen.width + panel_w, max(seen.height, 60 + len(top) * 52)), (255, 255, 255))
    canvas.paste(seen, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x0 = seen.width + 20
    y = 20
    for name, p in top:
        draw.text((x0, y), f"{name[:44]}", fill=(0, 0, 0), font=font)
        draw.rectangle((x0, y + size + 6, x0 + int((panel_w - 120) * p), y + size + 20), fill=(40, 110, 200))
        draw.text((x0 + panel_w - 110, y + size + 2), f"{p:.1%}", fill=(0, 0, 0), font=font)
        y += 52
    for text in reversed(banners):
        canvas = _banner(canvas, text)
    return canvas


def predict(opts: PredictOptions, progress: Progress = lambda _m: None) -> dict:
    """Run the artifact on each photo; write the pictures; return what it found per photo."""
    from edgekit.artifacts import check_writable
    from edgekit.calibration.images import center_crop, expand_images, load_rgb, preprocess
    from edgekit.labels import class_names, palette
    from edgekit.manifest import read_manifest
    from edgekit.registry import get_variant
    from edgekit.runtime import open_runner
    from edgekit.targets.base import NotRunnable

    if not opts.images:
        raise EdgekitError("give at least one photo")
    if opts.top < 1:
        raise EdgekitError(f"--top must be at least 1 (got {opts.top})")
    manifest = read_manifest(Path(opts.artifact))
    variant = get_variant(manifest.variant)
    photos, unreadable = [], []
    for path in expand_images(opts.images):
        try:
            photos.append((path, load_rgb(path)))
        except EdgekitError as e:
            if not opts.skip_unreadable:
                raise EdgekitError(f"{e} (--skip-unreadable runs the others)") from None
            unreadable.append({"image": str(path), "why": str(e)})
            progress(f"skipping {path.name}: {e}")
    if not photos:
        raise EdgekitError("none of the photos could be read: " + "; ".join(u["why"] for u in unreadable))
    if opts.hr is not None and (variant.task != "sr" or not Path(opts.hr).exists()):
        raise EdgekitError(f"--hr {opts.hr}: " + ("is for a super-resolution artifact" if variant.task != "sr"
                                                   else "not found"))
    proxy = False
    try:
        runner = open_runner(manifest)  # checks the model file's sha256; NotRunnable where the host cannot
        ran = manifest.spec.runner_label
    except NotRunnable as e:
        if manifest.spec.proxy is None:
            raise
        from edgekit.verify import ProxyRunner

        progress(f"{e}: running its proxy, the torch model that was converted")
        runner, proxy = ProxyRunner(manifest, str(e)), True
        ran = runner.label
    labels = class_names(variant)
    folder = Path(opts.output) / Path(manifest.artifact_dir).name
    check_writable(folder)
    random_weights = manifest.random_weights
    failed = None if manifest.verification.get("passed", True) else \
        f"FAILED verification: {'; '.join(manifest.verification.get('failures') or ['see its manifest'])}"
    banners = ([f"THIS ARTIFACT {failed}"] if failed else []) + ([RANDOM_BANNER] if random_weights else []) + \
        ([f"PROXY: {manifest.target}'s converted torch model ran here, not the artifact"] if proxy else [])
    results = []
    for path, photo in photos:
        progress(f"running {manifest.target} {manifest.precision} on {path.name}")
        if variant.task == "sr":
            from edgekit.predict_sr import predict_sr

            hr = Path(opts.hr) if opts.hr is not None else None
            results.append(predict_sr(runner, manifest, variant, path, photo, folder, banners, hr))
            continue
        x = preprocess(photo, variant, manifest.size)[None]
        logits = runner.run(x, variant.logits_shape(manifest.size))[0]
        record = {"image": str(path), "size": list(photo.size)}
        if variant.task == "seg":
            overlay, indexed, shares = _segmentation_pictures(photo, logits, labels, palette(variant.dataset), banners)
            files = {"overlay": folder / f"{path.stem}-overlay.png", "classes": folder / f"{path.stem}-classes.png"}
            _save_png(overlay, files["overlay"])
            _save_png(indexed, files["classes"])
            record["classes"] = [{"label": n, "share": s} for n, _, s in shares]
        else:
            probs = _softmax(logits.astype(np.float64))
            best = [(labels[k], float(probs[k])) for k in np.argsort(-probs)[:opts.top]]
            files = {"top5": folder / f"{path.stem}-top{opts.top}.png"}
            _save_png(_classification_picture(center_crop(photo, manifest.size), best, banners), files["top5"])
            record["top"] = [{"label": n, "probability": p} for n, p in best]
        record["files"] = {k: str(v) for k, v in files.items()}
        results.append(record)
    return {"artifact": manifest.artifact_dir, "variant": variant.name, "task": variant.task,
            "target": manifest.target, "precision": manifest.precision,
            "runner": ran, "proxy": proxy, "failed_verification": failed,
            "random_weights": random_weights, "output": str(folder), "predictions": results,
            "unreadable": unreadable}
