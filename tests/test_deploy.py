"""The deploy form: folding and each rewrite checked numerically against the step before it."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import variant_params
from edgekit.calibration.images import image_batch
from edgekit.deploy import Upsample, make_deploy_form, plan_rewrites
from edgekit.deploy.attention import StaticLiteMLA
from edgekit.deploy.passes import fold_batchnorm
from edgekit.deploy.upsample import ExactBicubicUpsample
from edgekit.errors import EdgekitError
from edgekit.inspect import expected_transposes, onnx_summary
from edgekit.metrics import compare
from edgekit.models import build_model
from edgekit.models.efficientvit_mit import LiteMLA
from edgekit.models.init import calibrated_random_init
from edgekit.reference import run_images
from edgekit.registry import VARIANTS, get_variant
from edgekit.targets import get_target

BN = torch.nn.modules.batchnorm._BatchNorm
FOLD_REL_TOL = 1e-5


def assert_exact_rewrite(model, rewrite, images, batch_limit=None, rel_tol=FOLD_REL_TOL):
    """An exact rewrite: equal in float64 (< 1e-10), and in fp32 no further from the exact function
    than `rel_tol` or twice the trained fp32 model's own rounding error (deep random-weight models
    such as B3 have a noise floor above 1e-5 before anything is rewritten)."""
    x = torch.from_numpy(images[:batch_limit])
    with torch.no_grad():
        exact64 = copy.deepcopy(model).double()(x.double()).numpy()
        rewritten64 = rewrite(copy.deepcopy(model).double()).double()
        assert compare(exact64, rewritten64(x.double()).numpy())["max_rel"] < 1e-10
        floor = compare(exact64, model(x).numpy())["max_rel"]
        err = compare(exact64, rewrite(copy.deepcopy(model))(x).numpy())["max_rel"]
    assert err <= max(rel_tol, 2 * floor), (err, floor)


def _test_resolution(variant):
    # Reduced MIT resolutions keep every attention in its linear form (stage 4 has > head-dim tokens).
    if variant.family == "msra":
        return variant.resolution
    if variant.task == "sr":  # full resolution throughout: a small input keeps float64 quick
        return (48, 64)
    return (256, 256) if variant.task == "seg" else (224, 224)


@pytest.fixture(scope="module")
def calibrated():
    cache = {}

    def get(name):
        if name not in cache:
            variant = VARIANTS[name]
            size = _test_resolution(variant)
            images = image_batch(variant, size)
            torch.manual_seed(0)
            cache[name] = (calibrated_random_init(build_model(variant, size), images), images, size)
        return cache[name]

    return get


# B2/B3 are B0/B1's blocks, wider and deeper (the same passes; 10-27 s each here): with -m slow
@pytest.mark.parametrize("name", variant_params(also_slow=("b2-", "b3-")))
def test_folding_is_exact_and_leaves_no_batchnorm(calibrated, name):
    model, images, _ = calibrated(name)
    folded = fold_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, BN) for m in folded.modules())
    assert_exact_rewrite(model, fold_batchnorm, images)


@pytest.mark.parametrize("name", variant_params(also_slow=("b2-", "b3-")))
def test_onnx_of_deploy_form_is_static_and_lean(calibrated, name):
    model, images, size = calibrated(name)
    form = make_deploy_form(model, size, get_target("onnx"))
    deploy = lambda m: make_deploy_form(m, size, get_target("onnx")).model  # noqa: E731
    # Static attention sums in another order (ReduceSum + matmul for the normaliser), so its fp32
    # rounding differs more than folding's; 1e-4 is what fp32 artifacts are verified to.
    assert_exact_rewrite(model, deploy, images, batch_limit=1, rel_tol=1e-4)  # static forms: batch 1
    summary = onnx_summary(form.model, size)
    assert summary["batchnorm_nodes"] == 0
    assert summary["shape_ops"] == 0, summary["ops"]
    assert summary["max_rank"] <= 4
    assert summary["transposes"] == summary["transposes_needed"] == expected_transposes(form.model)


@pytest.mark.parametrize("name", ["b0-seg-cityscapes", "b1-cls", "m0-cls", "m4-cls"])
def test_bmm_attention_is_exact(calibrated, name):
    """ExecuTorch's attention form (3-D bmm, key sum as a matmul with ones, CGA with slices and biases
    expanded to the window batch) against the static form it rewrites: exact in float64."""
    from edgekit.deploy.passes import PASSES, bmm_attention, static_attention

    model, images, size = calibrated(name)
    static = static_attention(fold_batchnorm(copy.deepcopy(model)), size)
    assert_exact_rewrite(static, lambda m: bmm_attention(m, size), images, batch_limit=1)
    assert PASSES["bmm_attention"] is bmm_attention


def test_polyphase_upsample_is_exact(calibrated):
    """ExecuTorch's upsample form (no resize) against the nearest form it rewrites, on the whole
    b0-seg: exact in float64."""
    from edgekit.deploy.passes import PASSES, bicubic_exact, polyphase_upsample, static_attention

    model, images, size = calibrated("b0-seg-cityscapes")
    nearest = bicubic_exact(static_attention(fold_batchnorm(copy.deepcopy(model)), size), size)
    assert_exact_rewrite(nearest, lambda m: polyphase_upsample(m, size), images, batch_limit=1)
    assert PASSES["polyphase_upsample"] is polyphase_upsample


def test_transposes_needed_per_block():
    """LiteMLA: 1 (k^T; heads batched). CGA: 2 per head (q^T, attn^T; softmax on the last axis)."""
    b0 = make_deploy_form(build_model(get_variant("b0-seg")), (256, 256), get_target("onnx")).model
    assert expected_transposes(b0) == 4  # 2 + 2 EfficientViT blocks
    m0 = make_deploy_form(build_model(get_variant("m0-cls")), (224, 224), get_target("onnx")).model
    assert expected_transposes(m0) == 2 * 4 * (1 + 2 + 3)  # 4 heads in each of 6 blocks


@pytest.mark.parametrize("form", ["nearest", "polyphase"])
@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 4, 1, 1), (1, 2, 2, 3), (1, 8, 32, 64)])
def test_exact_bicubic_is_the_same_linear_map(scale, shape, form):
    x = torch.randn(*shape) * 10
    ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    up = ExactBicubicUpsample(scale, shape[1])
    if form == "polyphase":
        up.use_polyphase()
        nodes = torch.fx.symbolic_trace(up).graph.nodes
        assert not any("interpolate" in str(n.target) for n in nodes)  # no resize of any kind
        # ExecuTorch's XNNPACK partitioner refuses a concat of one tensor with itself
        assert all(len(set(n.args[0])) >= 2 for n in nodes if n.target is torch.cat)
    out = up(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize("scale", [2, 4])
def test_depth_to_space_upsample_exports_as_depth_to_space(tmp_path, scale):
    """The TFLite form's nearest steps leave PyTorch as Concat + DepthToSpace(DCR); ONNX Runtime runs
    that file and must give torch's bicubic."""
    import onnx
    import onnxruntime as ort

    from edgekit.targets.onnx import export_onnx

    up = ExactBicubicUpsample(scale, 3)
    up.depth_to_space = True
    path = export_onnx(up, (5, 7), tmp_path / "up.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("DepthToSpace") == scale // 2 and "Resize" not in ops
    x = torch.randn(1, 3, 5, 7)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).numpy()
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("size", [(4, 4), (8, 16)])  # quadratic (16 tokens == dim) and linear forms
def test_static_litemla_equals_the_trained_block(size):
    torch.manual_seed(0)
    src = LiteMLA(64, dim=16).eval()
    x = torch.randn(1, 64, *size)
    with torch.no_grad():
        torch.testing.assert_close(StaticLiteMLA(src, size)(x), src(x), rtol=1e-5, atol=1e-5)


def test_fp16_safe_attention_has_no_nan_where_the_original_has():
    torch.manual_seed(0)
    src = LiteMLA(64, dim=16).eval()
    x = torch.randn(1, 64, 64, 128) * 4
    with torch.no_grad():
        src.qkv.conv.weight[:16].fill_(-1.0)  # head 0's queries: relu(q) == 0 on positive inputs
        x = x.abs()
        plain = StaticLiteMLA(copy.deepcopy(src), (64, 128)).half()
        safe = StaticLiteMLA(copy.deepcopy(src), (64, 128))
        safe.make_fp16_safe()
        safe = safe.half()
        assert not torch.isfinite(plain(x.half())).all()  # 0 / (0 + 1e-15 -> 0) and sums over 8192 tokens
        out16 = safe(x.half()).float()
        ref = StaticLiteMLA(copy.deepcopy(src), (64, 128))(x)
    assert torch.isfinite(out16).all()
    assert compare(ref.numpy(), out16.numpy())["psnr_peak_db"] > 40


@pytest.mark.parametrize("name,size", [("b0-seg", (256, 512)), ("m0-cls", (224, 224))])
def test_fp16_forward_of_deploy_form_on_real_images(name, size):
    variant = get_variant(name)
    images = image_batch(variant, size)
    torch.manual_seed(0)
    model = calibrated_random_init(build_model(variant, size), images)
    form = make_deploy_form(model, size, get_target("tflite"), "fp16")
    fp32 = run_images(form.model, images)
    fp16 = run_images(form.model, images, torch.float16)
    assert next(form.model.parameters()).dtype == torch.float32  # run_images never converts in place
    result = compare(fp32, fp16)
    assert result["finite"]
    assert result["psnr_peak_db"] >= 40.0, result


def _plan(target: str, precision: str | None = None, upsample=None) -> list[str]:
    from edgekit.targets import TARGETS

    spec = TARGETS[target]
    return plan_rewrites(spec.plan, spec.check_precision(precision or spec.default_precision), upsample, target)


def test_plans_per_target():
    assert "bicubic_exact" in _plan("tflite")
    assert "bicubic_exact" in _plan("coreml")
    assert "bicubic_exact" not in _plan("onnx")  # ONNX Resize runs cubic
    assert _plan("tflite")[-1] == "nearest_depth_to_space"  # XNNPACK has no resize-nearest
    assert "nearest_depth_to_space" not in _plan("coreml")
    assert _plan("executorch", "fp32")[-1] == "polyphase_upsample"  # its XNNPACK has neither resize
    assert "bicubic_to_bilinear" in _plan("tflite", upsample=Upsample.BILINEAR)  # only when asked
    with pytest.raises(EdgekitError, match="not available for tflite"):
        _plan("tflite", upsample=Upsample.BICUBIC)
    # fp16-safe attention is for fp16 artifacts only; fp32 ones stay the trained function.
    assert "fp16_safe_attention" not in _plan("tflite", "fp32")
    assert "fp16_safe_attention" in _plan("tflite", "fp16")
    assert "fp16_safe_attention" in _plan("coreml")  # CoreML's default precision is fp16
    assert "fp16_safe_attention" in _plan("coreml", "int8-weights")  # computes in fp16
    assert "int8_attention_floor" in _plan("tflite", "int8") and "int8_attention_floor" not in _plan("tflite")
    with pytest.raises(EdgekitError, match="--precision 'fp16' is not one of: fp32"):
        _plan("onnx", "fp16")


def test_deploy_form_leaves_the_trained_model_untouched():
    model = build_model(get_variant("b0-seg"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    make_deploy_form(model, (256, 256), get_target("tflite"))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_int8_plan_floors_the_attention_normaliser():
    from edgekit.calibration.sources import calibration_set

    variant = get_variant("b0-seg")
    size = (128, 256)
    calib = calibration_set(variant, size, None, 4).data
    torch.manual_seed(0)
    model = calibrated_random_init(build_model(variant, size), calib)
    form = make_deploy_form(model, size, get_target("tflite"), "int8", calibration=calib)
    assert form.rewrites[-1].name == "int8_attention_floor" and not form.rewrites[-1].exact
    floors = [m.den_floor for m in form.model.modules() if isinstance(m, StaticLiteMLA)]
    assert len(floors) == 4 and all(f > 0 for f in floors)
    out = compare(run_images(model, calib), run_images(form.model, calib))
    assert out["finite"] and out["psnr_peak_db"] > 40  # the floor only touches near-zero normalisers
    with pytest.raises(ValueError, match="calibration"):
        make_deploy_form(model, size, get_target("tflite"), "int8")


def test_upsample_of_inverts_plan_rewrites():
    from edgekit.deploy import upsample_of
    from edgekit.targets import TARGETS

    for target, spec in TARGETS.items():
        for upsample in spec.plan.allowed_upsample:
            assert upsample_of(_plan(target, None, upsample)) is upsample, (target, upsample)
