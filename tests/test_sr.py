"""Super-resolution: edgekit's own EfficientViT SR model, its shipped weights, tiling, predict and eval on
the three set layouts (checked against BasicSR's metrics, the field's peer)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from conftest import one_line_error, run_edgekit
from edgekit.calibration.images import BUILTIN_DIR, load_rgb, low_resolution
from edgekit.checkpoints import SR_WEIGHTS_DIR
from edgekit.cli import app
from edgekit.errors import EdgekitError
from edgekit.models import build_model
from edgekit.models.efficientvit_sr import EfficientViTSR
from edgekit.reference import source_model
from edgekit.registry import get_variant, parse_resolution
from edgekit.sr_data import to_pixels
from edgekit.sr_metrics import psnr_y
from edgekit.tiling import run_tiled, tile_starts


def test_the_skip_branch_starts_as_bicubic_x2():
    model = EfficientViTSR(16, 1)
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        skip = model.upsample(model.skip(x))
    bicubic = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    # the conv pads with zeros where PyTorch's bicubic repeats the border: equal away from it
    assert (skip - bicubic)[..., 4:-4, 4:-4].abs().max() < 1e-6


def test_sr_variants_take_any_size_and_ship_their_weights():
    variant = get_variant("sr-x2")
    assert parse_resolution("150x222", variant) == (150, 222)  # no downsampling: any size
    assert variant.logits_shape((160, 240)) == (1, 3, 320, 480)
    for name in ("sr-x2", "sr-x2-w0.75"):
        assert (SR_WEIGHTS_DIR / f"{name}.safetensors").is_file()
    model, source = source_model(variant, variant.resolution, None)
    assert source["layout"] == "edgekit-sr" and source["sha256"] and "trained on 4 photos" in source["shipped"]
    assert "authors'" in source["shipped"]  # says they are not the authors'
    with pytest.raises(EdgekitError, match="no stand-in"):
        source_model(variant, variant.resolution, None, "trained-like")
    # the shipped weights are trained: better than bicubic on a photo they never saw
    hr = np.asarray(load_rgb(BUILTIN_DIR / "bear.jpeg"), dtype=np.float64)[:320, :480]
    lr = low_resolution(hr, 2)
    with torch.no_grad():
        out = model(torch.from_numpy((lr / 255).transpose(2, 0, 1)[None].astype(np.float32)))[0].numpy()
    bicubic = F.interpolate(torch.from_numpy(lr.transpose(2, 0, 1)[None]), scale_factor=2, mode="bicubic",
                            align_corners=False)[0].numpy().transpose(1, 2, 0)
    assert psnr_y(to_pixels(out), hr, 2) > psnr_y(np.clip(np.round(bicubic), 0, 255), hr, 2) + 0.3


def test_sr_agreement_is_the_same_in_either_layout():
    """The int8 search compares a TFLite graph's outputs in its own NHWC layout."""
    from edgekit.metrics import compare

    rng = np.random.default_rng(0)
    ref = rng.random((2, 3, 20, 30))
    out = np.clip(ref + rng.normal(0, 0.01, ref.shape), 0, 1)
    nchw, nhwc = compare(ref, out, "sr"), compare(ref.transpose(0, 2, 3, 1), out.transpose(0, 2, 3, 1), "sr")
    assert nchw["psnr_y_db_min"] == pytest.approx(nhwc["psnr_y_db_min"]) and 35 < nchw["psnr_y_db_min"] < 50
    assert nchw["agreement"] == nhwc["agreement"] < 1


def test_a_classifier_checkpoint_is_not_an_sr_model(tmp_path):
    from safetensors.torch import save_file

    from edgekit.checkpoints import load_weights

    path = tmp_path / "b0.safetensors"
    save_file({k: v.contiguous() for k, v in build_model(get_variant("b0-cls")).state_dict().items()}, str(path))
    variant = get_variant("sr-x2")
    with pytest.raises(EdgekitError, match="super-resolution"):
        load_weights(build_model(variant), path, variant)


def test_tile_starts_cover_the_image_with_the_overlap():
    assert tile_starts(100, 160, 16) == [0]
    starts = tile_starts(500, 160, 16)
    assert starts[0] == 0 and starts[-1] == 340
    assert all(b - a <= 160 - 16 for a, b in itertools.pairwise(starts))


def test_tiles_blend_without_seams():
    """Tiled against whole-image PyTorch on a photo: the blend leaves no visible seam (and a photo
    smaller than the input is padded, its output cropped to 2x)."""
    variant = get_variant("sr-x2")
    model, _ = source_model(variant, variant.resolution, None)
    hr = np.asarray(load_rgb(BUILTIN_DIR / "mit-fig-6.jpeg"), dtype=np.float64)
    x = np.ascontiguousarray((low_resolution(hr, 2) / 255).astype(np.float32).transpose(2, 0, 1))[:, :150, :200]

    def run(t):
        with torch.no_grad():
            return model(torch.from_numpy(t)).numpy()

    whole = to_pixels(run(x[None])[0])
    tiled = to_pixels(run_tiled(run, x, (64, 96), 2))
    assert tiled.shape == whole.shape == (300, 400, 3)
    assert psnr_y(tiled, whole, 2) > 40
    small = run_tiled(run, x[:, :40, :50], (64, 96), 2)
    assert small.shape == (3, 80, 100)


def test_export_verifies_in_the_task_terms(onnx_sr):
    manifest = json.loads((onnx_sr / "edgekit.json").read_text())
    v = manifest["verification"]
    assert v["passed"] and v["agreement_kind"].startswith("8-bit") and v["psnr_y_db_min"] > 60
    assert len(v["images"]) == 7 and manifest["source"]["shipped"]


@pytest.mark.parametrize("layout", ["sr-benchmark", "div2k", "hr-only"])
def test_eval_on_each_layout_agrees_with_basicsr(basicsr, onnx_sr, tmp_path, layout):
    from edgekit.demo_data import super_resolution
    from edgekit.eval import EvalOptions, evaluate

    psnr_ssim, matlab = basicsr
    data = tmp_path / "set"
    hrs = super_resolution(data, layout, names=("bear.jpeg", "mit-fig-6.jpeg"))
    saved = tmp_path / "predictions"
    r = evaluate(EvalOptions(onnx_sr, data, save_predictions=saved))
    assert r["dataset"] == layout and r["images"] == 2 and r["metric"] == "PSNR-Y"
    theirs, bicubic = [], []
    for hr_path in hrs:
        hr = np.asarray(Image.open(hr_path), dtype=np.float64)
        out = np.asarray(Image.open(saved / f"{hr_path.stem}.png"), dtype=np.float64)
        # BasicSR reads with OpenCV (BGR) and crops `scale` pixels
        theirs.append(psnr_ssim.calculate_psnr(out[..., ::-1], hr[..., ::-1], 2, test_y_channel=True))
        lr = low_resolution(hr, 2)
        up = np.clip(np.round(matlab.imresize(lr / 255.0, 2) * 255.0), 0, 255)
        bicubic.append(psnr_ssim.calculate_psnr(up[..., ::-1], hr[..., ::-1], 2, test_y_channel=True))
    assert r["artifact"]["value"] == pytest.approx(np.mean(theirs), abs=1e-4)
    assert r["bicubic"]["value"] == pytest.approx(np.mean(bicubic), abs=2e-3)  # BasicSR resizes in float32
    assert abs(r["delta"]) < 0.01 and r["delta_ci95"][0] <= r["delta"] <= r["delta_ci95"][1]


def test_predict_upscales_any_size(onnx_sr, tmp_path):
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    photo = load_rgb(BUILTIN_DIR / "bear.jpeg")
    photo.crop((0, 0, 50, 40)).save(small)
    hr = tmp_path / "hr"
    hr.mkdir()
    original = photo.crop((0, 0, 600, 400))
    original.save(hr / "large.png")
    Image.fromarray(low_resolution(np.asarray(original), 2).astype(np.uint8)).save(large)
    r = run_edgekit("predict", str(onnx_sr), str(small), str(large), "-o", str(tmp_path / "out"), "--hr", str(hr),
                    "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)["predictions"]
    assert out[0]["output_size"] == [100, 80] and "no original" in out[0]["hr_missing"]
    assert out[1]["output_size"] == [600, 400] and out[1]["tiles"] > 1 and out[1]["psnr_y"] > 20
    assert Image.open(out[1]["files"]["x2"]).size == (600, 400)
    assert Image.open(out[1]["files"]["compare"]).width > 400


def test_sr_mistakes_are_one_line(onnx_sr, onnx_b0, tmp_path):
    from edgekit.demo_data import super_resolution

    runner = CliRunner()
    data = tmp_path / "set"
    super_resolution(data, "sr-benchmark", names=("bear.jpeg",))
    one_line_error(runner.invoke(app, ["eval", onnx_b0.artifact_dir, "--data", str(data)]), "sr-benchmark's layout")
    (data / "LR_bicubic" / "X2" / "bearx2.png").unlink()
    one_line_error(runner.invoke(app, ["eval", str(onnx_sr), "--data", str(data)]), "has no x2 input")
    photo = tmp_path / "p.png"
    load_rgb(BUILTIN_DIR / "bear.jpeg").save(photo)
    one_line_error(runner.invoke(app, ["predict", onnx_b0.artifact_dir, str(photo), "--hr", str(photo)]),
                   "is for a super-resolution artifact")
