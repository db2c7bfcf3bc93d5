"""Super-resolution's metrics as the SR papers compute them: PSNR and SSIM on the Y channel of
YCbCr (ITU-R BT.601, studio range, as MATLAB's rgb2ycbcr), `scale` pixels cropped at each border,
and the low-resolution image made with MATLAB's antialiased bicubic `imresize` (the convention
Set5/Set14/BSD100/Urban100 and DIV2K's LR sets were made with; SwinIR and BasicSR compute the same).

Images are float arrays in [0, 255], HWC RGB (or HW for Y). numpy only: the eval imports this.
"""

from __future__ import annotations

import numpy as np

# MATLAB rgb2ycbcr's Y row, for RGB in [0, 1] giving Y in [16, 235]
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al.'s Gaussian window


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """The Y channel (in [16, 235] for RGB in [0, 255]) of an HWC RGB image."""
    return rgb.astype(np.float64) / 255.0 @ _Y_WEIGHTS + 16.0


def _prepare(img: np.ndarray, ref: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    if img.shape != ref.shape:
        raise ValueError(f"images differ in shape: {img.shape} and {ref.shape}")
    if crop:
        img, ref = img[crop:-crop, crop:-crop], ref[crop:-crop, crop:-crop]
    if img.ndim == 3:
        img, ref = y_channel(img), y_channel(ref)
    return img.astype(np.float64), ref.astype(np.float64)


def psnr_y(img: np.ndarray, ref: np.ndarray, crop: int = 0) -> float:
    """PSNR (dB, peak 255) of `img` against `ref` on the Y channel, `crop` pixels off each border."""
    a, b = _prepare(img, ref, crop)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _gaussian_valid(x: np.ndarray) -> np.ndarray:
    """`x` filtered by the SSIM window in 'valid' mode (the window is separable: rows, then columns)."""
    half = SSIM_WINDOW // 2
    k = np.exp(-((np.arange(SSIM_WINDOW) - half) ** 2) / (2 * SSIM_SIGMA ** 2))
    k /= k.sum()
    h, w = x.shape
    rows = sum(k[i] * x[i:h - 2 * half + i] for i in range(SSIM_WINDOW))
    return sum(k[i] * rows[:, i:w - 2 * half + i] for i in range(SSIM_WINDOW))


def ssim_y(img: np.ndarray, ref: np.ndarray, crop: int = 0) -> float:
    """SSIM (Wang et al. 2004, its MATLAB code's constants) on the Y channel, `crop` pixels off each border."""
    a, b = _prepare(img, ref, crop)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _gaussian_valid(a), _gaussian_valid(b)
    var_a = _gaussian_valid(a * a) - mu_a ** 2
    var_b = _gaussian_valid(b * b) - mu_b ** 2
    cov = _gaussian_valid(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim.mean())


def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB imresize's cubic kernel (a = -0.5)."""
    ax = np.abs(x)
    return ((1.5 * ax ** 3 - 2.5 * ax ** 2 + 1) * (ax <= 1)
            + (-0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(weights, 0-based source indices), each (out_len, taps): MATLAB's contributions(), with the
    kernel widened by 1/scale when shrinking (antialiasing) and the borders mirrored."""
    width = 4.0 / scale if scale < 1 else 4.0
    kernel = (lambda x: scale * _cubic(scale * x)) if scale < 1 else _cubic
    u = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)  # output pixel centres, 1-based input space
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])  # symmetric padding
    indices = mirror[(indices.astype(np.int64) - 1) % (2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's `imresize(img, scale, 'bicubic')` (antialiased when shrinking) of an HWC or HW float
    image, without rounding; the output side is ceil(side * scale), as MATLAB's."""
    out = img.astype(np.float64)
    for axis in (0, 1):  # MATLAB resizes the dimensions in the order of their scale: equal here
        in_len = out.shape[axis]
        weights, indices = _contributions(in_len, int(np.ceil(in_len * scale)), scale)
        moved = np.moveaxis(out, axis, 0)
        resized = np.einsum("ot,ot...->o...", weights, moved[indices])
        out = np.moveaxis(resized, 0, axis)
    return out
