import numpy as np
import pytest

from calibration.images import BUILTIN_DIR, builtin_images
from calibration.sources import calibration_set
from edgekit.errors import EdgekitError
from edgekit.registry import get_variant

B0 = get_variant("b0-seg")


def test_builtin_images_are_packaged_with_their_licence():
    assert {p.name for p in builtin_images()} >= {"city.png", "indoor.jpg", "cat.jpg", "bear.jpeg", "girl.png"}
    assert "Apache" in (BUILTIN_DIR / "README.md").read_text()


def test_builtin_calibration_is_deterministic_and_augmented():
    a = calibration_set(B0, (64, 128), None, 6)
    b = calibration_set(B0, (64, 128), None, 6)
    assert a.data.shape == (6, 3, 64, 128) and a.data.dtype == np.float32
    assert np.array_equal(a.data, b.data) and a.originals == 2
    assert not np.array_equal(a.data[2], a.data[0])  # extra samples are crops/flips, not copies


def test_folder_and_npy_sources(tmp_path):
    from PIL import Image

    Image.new("RGB", (50, 40), (200, 10, 10)).save(tmp_path / "red.png")
    (tmp_path / "notes.txt").write_text("ignored")
    s = calibration_set(B0, (32, 64), tmp_path, 3)
    assert s.data.shape == (3, 3, 32, 64) and s.originals == 1
    photos = np.random.default_rng(0).integers(0, 255, (2, 40, 50, 3), dtype=np.uint8)
    np.save(tmp_path / "photos.npy", photos)
    assert calibration_set(B0, (32, 64), tmp_path / "photos.npy", 5).data.shape == (5, 3, 32, 64)
    ready = np.zeros((2, 3, 32, 64), np.float32)
    np.save(tmp_path / "ready.npy", ready)
    assert calibration_set(B0, (32, 64), tmp_path / "ready.npy", 2).data.shape == (2, 3, 32, 64)


def test_bad_sources(tmp_path):
    with pytest.raises(EdgekitError, match="no .jpg"):
        calibration_set(B0, (32, 64), tmp_path, 2)
    np.save(tmp_path / "bad.npy", np.zeros((2, 5), np.float32))
    with pytest.raises(EdgekitError, match="expected uint8"):
        calibration_set(B0, (32, 64), tmp_path / "bad.npy", 2)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(EdgekitError, match="cannot read image"):
        calibration_set(B0, (32, 64), tmp_path, 2)
    with pytest.raises(EdgekitError, match="must be positive"):
        calibration_set(B0, (32, 64), None, 0)
