"""`edgekit predict` for super-resolution: the upscaled photo and a picture that shows what it adds.

Per photo: `<stem>-x2.png` (the photo upscaled by the artifact, tiled when larger than its input:
edgekit.tiling) and `<stem>-compare.png` (bicubic | artifact, on the same crop zoomed so that the
difference is visible, labelled with the model and, when the photo's high-resolution original is
given, each side's PSNR-Y against it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError

CROP = 96  # output pixels of the compared crop
ZOOM = 3  # nearest-neighbour enlargement of the crop, so single pixels show


def hr_for(path: Path, hr: Path | None, scale: int = 2) -> Path | None:
    """The HR original of photo `path`: `hr` itself (a file), or the file of the same stem in folder `hr`
    (`NAMEx2.png`'s is `NAME.png`, as the SR sets name them)."""
    if hr is None:
        return None
    if hr.is_file():
        return hr
    stems = {path.stem, path.stem.removesuffix(f"x{scale}")}
    found = sorted(p for p in hr.iterdir() if p.stem in stems) if hr.is_dir() else []
    return found[0] if found else None


def _detail_crop(image: np.ndarray) -> tuple[int, int]:
    """Top-left of the CROP x CROP window with the most edges (where upscalers differ)."""
    gray = image.mean(axis=2)
    edges = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1]
    h, w = edges.shape
    best, where = -1.0, (0, 0)
    step = CROP // 2
    for y in range(0, max(1, h - CROP + 1), step):
        for x in range(0, max(1, w - CROP + 1), step):
            score = float(edges[y:y + CROP, x:x + CROP].sum())
            if score > best:
                best, where = score, (y, x)
    return where


def comparison(bicubic: np.ndarray, upscaled: np.ndarray, titles: tuple[str, str], banners: list[str]):
    """Two zoomed crops side by side, each titled."""
    from PIL import Image, ImageDraw

    from edgekit.pictures import banner, font

    y, x = _detail_crop(upscaled)
    panels = []
    for image in (bicubic, upscaled):
        crop = image[y:y + CROP, x:x + CROP].astype(np.uint8)
        panels.append(Image.fromarray(crop).resize((crop.shape[1] * ZOOM, crop.shape[0] * ZOOM), Image.NEAREST))
    pw, ph = panels[0].size
    title_h, gap = 28, 8
    canvas = Image.new("RGB", (2 * pw + gap, ph + title_h), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (panel, title) in enumerate(zip(panels, titles)):
        canvas.paste(panel, (k * (pw + gap), title_h))
        draw.text((k * (pw + gap) + 4, 6), title, fill="black", font=font(14))
    for text in banners:
        canvas = banner(canvas, text)
    return canvas


def predict_sr(runner, manifest, variant, path: Path, photo, folder: Path, banners: list[str],
               hr_given: Path | None) -> dict:
    """Upscale one photo with the artifact; write its pictures; the record of what was written.
    `hr_given`: --hr (the original itself, or a folder holding it)."""
    from PIL import Image

    from edgekit.calibration.images import load_rgb
    from edgekit.pictures import save_png
    from edgekit.sr_data import bicubic, to_pixels
    from edgekit.sr_metrics import psnr_y
    from edgekit.tiling import run_tiled, tile_count

    scale = variant.scale
    hr_path = hr_for(path, hr_given, scale)
    lr = np.asarray(photo, dtype=np.float64)
    x = np.ascontiguousarray((lr / 255).astype(np.float32).transpose(2, 0, 1))
    expected = variant.logits_shape(manifest.size)
    upscaled = to_pixels(run_tiled(lambda t: runner.run(t, expected), x, manifest.size, scale))
    baseline = bicubic(lr, scale)
    record = {"image": str(path), "size": list(photo.size), "output_size": [upscaled.shape[1], upscaled.shape[0]],
              "tiles": tile_count(lr.shape[:2], manifest.size)}
    titles = ["bicubic x2", f"{variant.name} {manifest.target} {manifest.precision}"]
    if hr_path is None and hr_given is not None:
        record["hr_missing"] = f"no original of {path.name} in {hr_given}"
    if hr_path is not None:
        hr = np.asarray(load_rgb(hr_path), dtype=np.float64)
        if hr.shape[:2] != upscaled.shape[:2]:
            want = f"{upscaled.shape[1]}x{upscaled.shape[0]}"
            if (hr.shape[0] // scale, hr.shape[1] // scale) != lr.shape[:2]:
                raise EdgekitError(f"{hr_path}: {hr.shape[1]}x{hr.shape[0]} is not the x{scale} original of "
                                   f"{path.name} ({want})")
            hr = hr[: upscaled.shape[0], : upscaled.shape[1]]
        record["hr"] = str(hr_path)
        record["psnr_y"] = psnr_y(upscaled, hr, scale)
        record["bicubic_psnr_y"] = psnr_y(baseline, hr, scale)
        titles = [f"{titles[0]}: {record['bicubic_psnr_y']:.2f} dB", f"{titles[1]}: {record['psnr_y']:.2f} dB"]
    files = {"x2": folder / f"{path.stem}-x{scale}.png", "compare": folder / f"{path.stem}-compare.png"}
    folder.mkdir(parents=True, exist_ok=True)
    save_png(Image.fromarray(upscaled.astype(np.uint8)), files["x2"])
    save_png(comparison(baseline, upscaled, tuple(titles), banners), files["compare"])
    record["files"] = {k: str(v) for k, v in files.items()}
    return record
