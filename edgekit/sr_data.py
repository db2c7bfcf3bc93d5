"""Super-resolution validation sets in the layouts the field distributes them in, and their scoring.

- The SR benchmark layout (Set5, Set14, BSD100, Urban100 as distributed): `HR/NAME.png` with
  `LR_bicubic/X2/NAMEx2.png`.
- DIV2K: `DIV2K_valid_HR/0801.png` with `DIV2K_valid_LR_bicubic/X2/0801x2.png`.
- A folder of high-resolution photos only: each input made as those sets were made, MATLAB's
  antialiased bicubic downscale rounded to 8 bits (edgekit.calibration.images.low_resolution).

Scored as the SR papers score (SwinIR, BasicSR): PSNR and SSIM on the Y channel, `scale` pixels
cropped at each border, the HR cropped to a multiple of the scale; bicubic x2 (MATLAB's) is scored on
the same images as the baseline every SR paper reports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.calibration.images import IMAGE_SUFFIXES
from edgekit.errors import EdgekitError

SR_FORMATS = ("sr-benchmark", "div2k", "hr-only")
LAYOUTS = {
    "sr-benchmark": "HR/NAME.png with LR_bicubic/X2/NAMEx2.png (Set5, Set14, BSD100, Urban100)",
    "div2k": "DIV2K_valid_HR/NNNN.png with DIV2K_valid_LR_bicubic/X2/NNNNx2.png",
    "hr-only": "a folder of high-resolution photos (inputs made with MATLAB-style bicubic)",
}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _pairs(root: Path, hr_dir: Path, lr_dir: Path, scale: int) -> list[tuple[str, Path, Path]]:
    if not lr_dir.is_dir():
        raise EdgekitError(f"{root}: {lr_dir.relative_to(root)} not found (the x{scale} inputs)")
    out = []
    for hr in _images(hr_dir):
        lr = lr_dir / f"{hr.stem}x{scale}{hr.suffix}"
        if not lr.is_file():
            raise EdgekitError(f"{root}: {hr.name} has no x{scale} input: {lr.relative_to(root)} not found")
        out.append((str(hr.relative_to(root)), lr, hr))
    return out


def detect(folder: Path) -> str | None:
    """The SR layout of `folder`, or None."""
    if (folder / "HR").is_dir() and (folder / "LR_bicubic").is_dir():
        return "sr-benchmark"
    if (folder / "DIV2K_valid_HR").is_dir():
        return "div2k"
    if not any(p.is_dir() for p in folder.iterdir()) and _images(folder) and \
            not any((folder / n).is_file() for n in ("labels.txt", "val.txt")):
        return "hr-only"
    return None


def samples(folder: Path, fmt: str, scale: int = 2) -> list[tuple[str, Path, Path]]:
    """(name, input, HR) per image, sorted; the input is the HR itself for "hr-only" (downscaled when read)."""
    if fmt == "sr-benchmark":
        if not (folder / "HR").is_dir():
            raise EdgekitError(f"{folder}: not the SR benchmark layout ({LAYOUTS[fmt]})")
        found = _pairs(folder, folder / "HR", folder / "LR_bicubic" / f"X{scale}", scale)
    elif fmt == "div2k":
        if not (folder / "DIV2K_valid_HR").is_dir():
            raise EdgekitError(f"{folder}: not the DIV2K layout ({LAYOUTS[fmt]})")
        found = _pairs(folder, folder / "DIV2K_valid_HR", folder / "DIV2K_valid_LR_bicubic" / f"X{scale}", scale)
    else:
        found = [(p.name, p, p) for p in _images(folder)]
    if not found:
        raise EdgekitError(f"{folder}: no images ({LAYOUTS[fmt]})")
    return found


def check_pair(lr_size: tuple[int, int], hr_size: tuple[int, int], scale: int, lr: Path, hr: Path) -> None:
    """An input must be its HR's size divided by the scale (the HR cropped to a multiple of it)."""
    want = (hr_size[0] // scale, hr_size[1] // scale)
    if lr != hr and tuple(lr_size) != want:
        raise EdgekitError(f"{lr}: {lr_size[0]}x{lr_size[1]}, but its HR {hr.name} is {hr_size[0]}x{hr_size[1]} "
                           f"(an x{scale} input must be {want[0]}x{want[1]})")


def load_pair(lr_path: Path, hr_path: Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(input, HR), HWC float64 in 0..255, the HR cropped to `scale` x the input."""
    from edgekit.calibration.images import load_rgb, low_resolution

    hr = np.asarray(load_rgb(hr_path), dtype=np.float64)
    lr = low_resolution(hr, scale) if lr_path == hr_path else np.asarray(load_rgb(lr_path), dtype=np.float64)
    return lr, hr[: lr.shape[0] * scale, : lr.shape[1] * scale]


def to_pixels(output: np.ndarray) -> np.ndarray:
    """A model's (3, H, W) output in [0, 1] as the 8-bit HWC image an app writes."""
    return np.clip(np.round(np.asarray(output, dtype=np.float64).transpose(1, 2, 0) * 255), 0, 255)


def scores(sr: np.ndarray, hr: np.ndarray, scale: int) -> np.ndarray:
    """[PSNR-Y, SSIM-Y] of an 8-bit HWC image against the HR, `scale` pixels cropped (the papers' way)."""
    from edgekit.sr_metrics import psnr_y, ssim_y

    return np.array([psnr_y(sr, hr, scale), ssim_y(sr, hr, scale)])


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline SR papers report: MATLAB's imresize, rounded to 8 bits."""
    from edgekit.sr_metrics import imresize

    return np.clip(np.round(imresize(lr, scale)), 0, 255)
