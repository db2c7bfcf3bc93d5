"""Super-resolution's metrics (edgekit.sr_metrics) against the peer the field uses: BasicSR's
`calculate_psnr`/`calculate_ssim(test_y_channel=True)` and its MATLAB `imresize`, on the built-in
photos. BasicSR's package __init__ imports its whole training stack (torchvision among it); the test
loads only the three modules it compares with, under stand-in parent packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.sr_metrics import imresize, psnr_y, ssim_y

PHOTOS = Path(__file__).resolve().parents[1] / "calibration" / "images"
def _photo(name: str, size=(240, 160)) -> np.ndarray:
    with Image.open(PHOTOS / name) as im:
        return np.asarray(im.convert("RGB").resize(size, Image.BICUBIC), dtype=np.float64)


@pytest.mark.parametrize("name", ["city.png", "bear.jpeg", "mit-fig-6.jpeg"])
def test_psnr_ssim_and_bicubic_agree_with_basicsr(basicsr, name):
    psnr_ssim, matlab = basicsr
    hr = _photo(name)
    lr = imresize(hr, 0.5)
    theirs = matlab.imresize(hr / 255.0, 0.5) * 255.0  # BasicSR works in [0, 1] and float32
    assert lr.shape == (80, 120, 3) and np.abs(lr - theirs).max() < 2e-3
    rng = np.random.default_rng(0)
    restored = np.clip(np.round(imresize(np.round(lr), 2.0) + rng.normal(0, 2, hr.shape)), 0, 255)
    for crop in (0, 2):
        # BasicSR reads images with OpenCV: it takes BGR and converts BGR to Y
        bgr, ref_bgr = restored[..., ::-1].copy(), hr[..., ::-1].copy()
        assert psnr_y(restored, hr, crop) == pytest.approx(
            psnr_ssim.calculate_psnr(bgr, ref_bgr, crop, test_y_channel=True), abs=1e-4)
        assert ssim_y(restored, hr, crop) == pytest.approx(
            psnr_ssim.calculate_ssim(bgr, ref_bgr, crop, test_y_channel=True), abs=1e-5)


def test_the_metrics_see_what_they_should():
    hr = _photo("city.png")
    assert psnr_y(hr, hr) == float("inf") and ssim_y(hr, hr) == pytest.approx(1.0)
    blurred = imresize(imresize(hr, 0.5), 2.0)
    assert 20 < psnr_y(blurred, hr, 2) < 40 and ssim_y(blurred, hr, 2) < 0.99
    assert imresize(np.ones((31, 45)), 0.5).shape == (16, 23)  # MATLAB's ceil
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_y(hr, hr[1:])
