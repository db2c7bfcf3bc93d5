"""The two random stand-ins: plain (every channel alike) and trained-like (the per-channel activation
range spread that breaks naive int8 on trained EfficientViT), measured on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.calibration.images import image_batch, verification_images
from edgekit.models.init import spread_targets
from edgekit.reference import source_model
from edgekit.registry import get_variant, parse_resolution


def _ranges(name: str, resolution: str, kind: str):
    """(each spread layer's max/min channel range, as its 1x1 reader sees it; the logits; the source)."""
    v = get_variant(name)
    size = parse_resolution(resolution, v)
    images = image_batch(v, size, verification_images(v.dataset))
    model, source = source_model(v, size, None, kind)
    seen = []
    hooks = [reader.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].abs().amax(dim=(0, 2, 3))))
             for _w, _l, reader in spread_targets(model)]
    with torch.no_grad():
        logits = model(torch.from_numpy(images)).numpy()
    for h in hooks:
        h.remove()
    return [float(r.max() / r.clamp_min(1e-12).min()) for r in seen], logits, source


@pytest.mark.parametrize("name,resolution", [("b0-seg", "64x128"), ("m0-cls", "224")])
def test_trained_like_spreads_channel_ranges_and_keeps_the_output_scale(name, resolution):
    plain, plain_logits, plain_source = _ranges(name, resolution, "plain")
    spread, logits, source = _ranges(name, resolution, "trained-like")
    assert len(spread) == len(plain) >= 10
    assert np.median(spread) >= 100 > 30 > np.median(plain)
    assert logits.std() == pytest.approx(plain_logits.std(), rel=0.2)
    assert plain_source["stand_in"]["kind"] == "plain" and source["stand_in"]["kind"] == "trained-like"
    assert "trained-like" in source["warning"]


def test_a_checkpoint_takes_no_stand_in(tmp_path):
    from edgekit.errors import EdgekitError
    from edgekit.export import ExportOptions, plan_export

    with pytest.raises(EdgekitError, match="--stand-in is for running without a checkpoint"):
        plan_export(ExportOptions("m0-cls", "onnx", weights=tmp_path / "w.pth", stand_in="trained-like"))
    with pytest.raises(EdgekitError, match="choose plain or trained-like"):
        plan_export(ExportOptions("m0-cls", "onnx", stand_in="trained"))


def test_cross_layer_equalization_is_exact_and_undoes_the_spread():
    """The exact pass against per-channel spread (deploy pass `cross_layer_equalization`) on the
    Microsoft model: every pair the traced graph allows is found (the FFNs, the patch embedding's
    chain and the squeeze-excite across ReLU; PatchMerging's 1x1 into its depthwise conv; each head's q
    into its depthwise conv, a linear boundary), the function is unchanged and the FFN hidden ranges
    the int8 activations see come back together."""
    from edgekit.calibration.sources import calibration_set
    from edgekit.deploy import make_deploy_form
    from edgekit.deploy.equalization import cross_layer_equalization, equalization_pairs
    from edgekit.reference import run_images
    from edgekit.targets import get_target
    from edgekit.targets.tflite.options import TFLiteOptions

    v = get_variant("m0-cls")
    size = parse_resolution("224", v)
    images = image_batch(v, size, verification_images(v.dataset))
    calib = calibration_set(v, size).data
    model, _ = source_model(v, size, None, "trained-like")
    form = make_deploy_form(model, size, get_target("tflite"), "fp32")
    pairs = equalization_pairs(form.model)
    kinds: dict[str, int] = {}
    for p in pairs:
        kind = ("patch_embed" if p.consumer.startswith("patch_embed") else "q -> dw" if ".dws." in p.consumer
                else p.consumer.rsplit(".", 1)[-1])
        kinds[kind] = kinds.get(kind, 0) + 1
    # m0: (6 blocks + 2 subsamples) x 2 FFNs; 3 patch-embed pairs; 2 PatchMerging x (SE fc1 -> fc2, conv1 ->
    # depthwise conv2); 6 blocks x 4 heads' q -> depthwise
    assert kinds == {"pw2": 16, "patch_embed": 3, "fc2": 2, "conv2": 2, "q -> dw": 24}
    assert all(p.through_relu == ("dws" not in p.consumer) for p in pairs)
    ffns = [p for p in pairs if p.consumer.endswith(".pw2")]

    def spreads(m):
        seen = []
        hooks = [dict(m.named_modules())[p.consumer].register_forward_pre_hook(
            lambda _m, inp: seen.append(inp[0].amax(dim=(0, 2, 3)))) for p in ffns]
        with torch.no_grad():
            m(torch.from_numpy(images))
        for h in hooks:
            h.remove()
        return [float(r.max() / r[r > 0].min()) for r in seen]

    before = spreads(form.model)
    reference = run_images(form.model, images)
    equalized = cross_layer_equalization(form.model, size, calibration=calib)
    after = spreads(equalized)
    got = run_images(equalized, images)
    assert len(before) == len(after) == 16
    assert np.abs(got - reference).max() <= 1e-5 * np.abs(reference).max()  # exact, to fp32 rounding
    assert np.median(after) < np.median(before) / 5, (np.median(before), np.median(after))
    # asked for through the target's option, the export's deploy form runs it (and records it)
    on = make_deploy_form(model, size, get_target("tflite"), "int8", calibration=calib,
                          options=TFLiteOptions(equalize="on"))
    assert "cross_layer_equalization" in [r.name for r in on.rewrites]
    off = make_deploy_form(model, size, get_target("tflite"), "int8", calibration=calib, options=TFLiteOptions())
    assert "cross_layer_equalization" not in [r.name for r in off.rewrites]


def test_bias_correction_cancels_the_mean_shift_of_int8_weights():
    """Deploy pass `bias_correction`: a layer with int8-rounded weights and the corrected bias has the
    float layer's mean output on the images it was measured on (exactly for a 1x1 conv; a 3x3 conv's
    windows do not see every pixel equally, so there the shift shrinks); on a whole model with 8-bit
    weights it brings the held-out photos closer to the float model (b0-cls trained-like, measured
    27.9 -> 31.4 dB median)."""
    import copy

    from edgekit.calibration.sources import calibration_set
    from edgekit.deploy import make_deploy_form
    from edgekit.deploy.passes import bias_correction, int8_weights, without_bias_correction
    from edgekit.metrics import sqnr_db
    from edgekit.reference import run_images
    from edgekit.targets import get_target

    torch.manual_seed(0)
    x = torch.rand(6, 8, 9, 9) * 3 + 1  # a positive mean: what makes the rounding error shift the output
    for layer in (torch.nn.Conv2d(8, 4, 1, bias=False), torch.nn.Conv2d(8, 16, 3), torch.nn.Conv2d(8, 8, 3, groups=8)):
        net = torch.nn.Sequential(layer)
        corrected = bias_correction(copy.deepcopy(net), (9, 9), calibration=x.numpy())
        with torch.no_grad():
            want = net(x).mean(dim=(0, 2, 3))
            corrected[0].weight.copy_(int8_weights(corrected[0].weight))
            got, naive = corrected(x).mean(dim=(0, 2, 3)), torch.nn.functional.conv2d(
                x, int8_weights(layer.weight), layer.bias, groups=layer.groups).mean(dim=(0, 2, 3))
        shift, left = (naive - want).abs().max(), (got - want).abs().max()
        assert left < (1e-5 if layer.kernel_size == (1, 1) else shift / 5), (layer, shift, left)

    v = get_variant("b0-cls")
    size = parse_resolution("224", v)
    images = image_batch(v, size, verification_images(v.dataset))
    calib = calibration_set(v, size).data
    model, _ = source_model(v, size, None, "trained-like")
    form = make_deploy_form(model, size, get_target("tflite"), "fp32").model.eval()
    reference = run_images(form, images)

    def with_int8_weights(m):
        m = copy.deepcopy(m)
        with torch.no_grad():
            for layer in m.modules():
                if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                    layer.weight.copy_(int8_weights(layer.weight))
        return m

    plain = [sqnr_db(r, o) for r, o in zip(reference, run_images(with_int8_weights(form), images))]
    corrected = bias_correction(copy.deepcopy(form), size, calibration=calib)
    fixed = [sqnr_db(r, o) for r, o in zip(reference, run_images(with_int8_weights(corrected), images))]
    assert np.median(fixed) > np.median(plain) + 2 and min(fixed) > min(plain), (plain, fixed)
    # the reference an export judges the corrected model against: the float function, restored exactly
    shifted = run_images(corrected, images)
    assert np.abs(shifted - reference).max() > 1e-3  # the corrected float graph is off, on purpose
    np.testing.assert_allclose(run_images(without_bias_correction(corrected), images), reference, atol=1e-5)
