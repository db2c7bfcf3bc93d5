import numpy as np
import pytest

from edgekit.calibration.images import (
    BUILTIN_DIR,
    CALIBRATION,
    VERIFICATION,
    calibration_images,
    stand_in_images,
    verification_images,
)
from edgekit.calibration.sources import calibration_set
from edgekit.errors import EdgekitError
from edgekit.registry import get_variant

B0 = get_variant("b0-seg")


def test_builtin_photos_split_into_sets_that_never_overlap():
    shipped = {p.name for p in BUILTIN_DIR.iterdir() if p.suffix != ".md"}
    assert len(shipped) == 11 and {p.name for p in stand_in_images()} == shipped
    verification = {n for names in VERIFICATION.values() for n in names}
    assert not set(CALIBRATION) & verification and set(CALIBRATION) | verification == shipped
    for dataset in ("cityscapes", "ade20k", "imagenet"):
        calib, verify = calibration_images(dataset), verification_images(dataset)
        assert len(verify) >= 4 and not {p.name for p in calib} & {p.name for p in verify}
        assert all(p.is_file() for p in calib + verify)
    assert calibration_images("cityscapes")[0].name == "city.png"  # scenes first for segmentation
    assert calibration_images("imagenet")[0].name == "girl.png"  # objects first for classifiers
    readme = (BUILTIN_DIR / "README.md").read_text()
    assert "Apache" in readme and "check before shipping" in readme


def test_builtin_calibration_is_deterministic_and_augmented():
    a = calibration_set(B0, (64, 128), None, 6)
    b = calibration_set(B0, (64, 128), None, 6)
    assert a.data.shape == (6, 3, 64, 128) and a.data.dtype == np.float32
    assert np.array_equal(a.data, b.data) and a.originals == 4
    assert [i["name"] for i in a.images] == ["city.png", "indoor.jpg", "girl.png", "cat.jpg"]
    assert all(len(i["sha256"]) == 64 and len(i["rgb_sha256"]) == 64 for i in a.images)
    assert not np.array_equal(a.data[4], a.data[0])  # extra samples are crops/flips, not copies


def test_folder_and_npy_sources(tmp_path):
    from PIL import Image

    Image.new("RGB", (50, 40), (200, 10, 10)).save(tmp_path / "red.png")
    (tmp_path / "notes.txt").write_text("ignored")
    s = calibration_set(B0, (32, 64), tmp_path, 3)
    assert s.data.shape == (3, 3, 32, 64) and s.originals == 1
    photos = np.random.default_rng(0).integers(0, 255, (2, 40, 50, 3), dtype=np.uint8)
    np.save(tmp_path / "photos.npy", photos)
    batch = calibration_set(B0, (32, 64), tmp_path / "photos.npy", 5)
    assert batch.data.shape == (5, 3, 32, 64)
    # each photo of a batch is identified by its pixels, so a verification photo in it is found
    from PIL import Image

    from edgekit.calibration.images import rgb_sha256

    assert [i["rgb_sha256"] for i in batch.images] == [rgb_sha256(Image.fromarray(p)) for p in photos]
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
