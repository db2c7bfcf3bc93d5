"""The zoo is the papers' models: same params/MACs, official state-dict names and shapes."""

import pytest
import torch

from conftest import randomize_bn_stats, variant_params
from edgekit.complexity import measure
from edgekit.info import MACS_REL_TOL, PARAMS_REL_TOL
from edgekit.models import build_model
from edgekit.models.efficientvit_mit import LiteMLA
from edgekit.registry import VARIANTS, agrees_with_paper, get_variant

ALL = sorted(VARIANTS)
# the papers print no params/MACs for their SR models (edgekit's design: tests/test_sr.py)
WITH_PAPER_FIGURES = [n for n in ALL if VARIANTS[n].task != "sr"]


@pytest.mark.parametrize("name", variant_params(WITH_PAPER_FIGURES))
def test_params_and_macs_match_the_papers(name):
    variant = VARIANTS[name]
    if variant.paper.params_m is None:  # B0 cls: no paper row; TABLES.md says "about 3.4M"
        assert abs(measure(variant).params / 1e6 - 3.4) < 0.05
        return
    for paper_macs in variant.paper.macs or [None]:
        resolution = paper_macs.resolution if paper_macs else variant.resolution
        c = measure(variant, resolution)
        assert agrees_with_paper(c.params / 1e6, variant.paper.params_m, PARAMS_REL_TOL), c.params
        if paper_macs:
            assert agrees_with_paper(c.macs / 1e9, paper_macs.gmacs, MACS_REL_TOL), (resolution, c.macs)


@pytest.mark.parametrize("name", variant_params(ALL))
def test_forward_output_shape(name):
    variant = VARIANTS[name]
    # MIT models take any multiple of 32 (small inputs keep this fast); MSRA is built for one size.
    size = (64, 96) if variant.family == "mit" else variant.resolution
    torch.manual_seed(0)
    model = randomize_bn_stats(build_model(variant, size))
    with torch.no_grad():
        y = model(torch.randn(2, 3, *size))
    if variant.task == "seg":
        assert y.shape == (2, variant.num_classes, size[0] // 8, size[1] // 8)
    elif variant.task == "sr":
        assert y.shape == (2, 3, size[0] * 2, size[1] * 2)
    else:
        assert y.shape == (2, variant.num_classes)
    assert torch.isfinite(y).all()


# Exact names and shapes, read off the official implementations (mit-han-lab/efficientvit,
# microsoft/Cream EfficientViT) module by module.
OFFICIAL_KEYS = {
    "b0-seg-cityscapes": {
        "backbone.input_stem.op_list.0.conv.weight": (8, 3, 3, 3),
        "backbone.input_stem.op_list.1.main.depth_conv.conv.weight": (8, 1, 3, 3),
        "backbone.input_stem.op_list.1.main.point_conv.norm.running_var": (8,),
        "backbone.stages.0.op_list.0.main.inverted_conv.conv.weight": (32, 8, 1, 1),
        "backbone.stages.2.op_list.0.main.inverted_conv.conv.bias": (128,),
        "backbone.stages.2.op_list.1.context_module.main.qkv.conv.weight": (192, 64, 1, 1),
        "backbone.stages.2.op_list.1.context_module.main.aggreg.0.0.weight": (192, 1, 5, 5),
        "backbone.stages.2.op_list.1.context_module.main.aggreg.0.1.weight": (192, 16, 1, 1),
        "backbone.stages.2.op_list.1.context_module.main.proj.conv.weight": (64, 128, 1, 1),
        "backbone.stages.2.op_list.1.context_module.main.proj.norm.num_batches_tracked": (),
        "backbone.stages.2.op_list.1.local_module.main.depth_conv.conv.bias": (256,),
        "backbone.stages.3.op_list.2.local_module.main.point_conv.norm.weight": (128,),
        "head.input_ops.0.op_list.0.conv.weight": (32, 128, 1, 1),
        "head.input_ops.1.op_list.0.norm.bias": (32,),
        "head.input_ops.2.conv.weight": (32, 32, 1, 1),
        "head.middle.op_list.0.main.inverted_conv.conv.weight": (128, 32, 1, 1),
        "head.output_ops.0.op_list.0.conv.weight": (128, 32, 1, 1),
        "head.output_ops.0.op_list.1.conv.weight": (19, 128, 1, 1),
        "head.output_ops.0.op_list.1.conv.bias": (19,),
    },
    "b1-seg-ade20k": {
        "head.output_ops.0.op_list.0.conv.weight": (150, 64, 1, 1),
        "head.output_ops.0.op_list.0.conv.bias": (150,),
        "head.middle.op_list.2.main.point_conv.norm.running_mean": (64,),
    },
    "b1-cls": {
        "head.op_list.0.conv.weight": (1536, 256, 1, 1),
        "head.op_list.2.linear.weight": (1600, 1536),
        "head.op_list.2.norm.weight": (1600,),
        "head.op_list.3.linear.weight": (1000, 1600),
        "head.op_list.3.linear.bias": (1000,),
    },
    "m0-cls": {
        "patch_embed.0.c.weight": (8, 3, 3, 3),
        "patch_embed.6.bn.running_var": (64,),
        "blocks1.0.dw0.m.c.weight": (64, 1, 3, 3),
        "blocks1.0.ffn0.m.pw1.c.weight": (128, 64, 1, 1),
        "blocks1.0.mixer.m.attn.qkvs.0.c.weight": (48, 16, 1, 1),
        "blocks1.0.mixer.m.attn.dws.3.c.weight": (16, 1, 5, 5),
        "blocks1.0.mixer.m.attn.proj.1.c.weight": (64, 64, 1, 1),
        "blocks1.0.mixer.m.attn.attention_biases": (4, 49),
        "blocks1.0.mixer.m.attn.attention_bias_idxs": (49, 49),
        "blocks2.0.0.m.c.weight": (64, 1, 3, 3),
        "blocks2.1.conv1.c.weight": (256, 64, 1, 1),
        "blocks2.1.se.fc1.weight": (64, 256, 1, 1),
        "blocks2.1.se.fc2.bias": (256,),
        "blocks2.1.conv3.bn.weight": (128,),
        "blocks2.2.1.m.pw2.c.weight": (128, 256, 1, 1),
        "blocks3.3.mixer.m.attn.attention_biases": (4, 16),
        "head.bn.running_mean": (192,),
        "head.l.weight": (1000, 192),
        "head.l.bias": (1000,),
    },
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_KEYS))
def test_official_state_dict_names_and_shapes(name):
    with torch.device("meta"):
        state = build_model(get_variant(name)).state_dict()
    for key, shape in OFFICIAL_KEYS[name].items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key


def test_msra_m0_has_699_keys_with_int64_bias_indices():
    with torch.device("meta"):
        state = build_model(get_variant("m0-cls")).state_dict()
    assert len(state) == 699
    idx = [k for k in state if k.endswith("attention_bias_idxs")]
    assert len(idx) == 6 and all(state[k].dtype == torch.int64 for k in idx)


def test_msra_resolution_is_a_construction_parameter():
    variant = get_variant("m0-cls")
    model = build_model(variant, (320, 320))  # stages at 20, 10, 5: last window is 5x5
    assert model.blocks3[3].mixer.m.attn.attention_biases.shape == (4, 25)
    assert model(torch.randn(1, 3, 320, 320)).shape == (1, 1000)
    with pytest.raises(ValueError, match="resolution"):
        model(torch.randn(1, 3, 224, 224))


def test_msra_attention_biases_follow_load_state_dict():
    """Upstream caches gathered biases in eval(); a later load_state_dict must not be ignored."""
    variant = get_variant("m0-cls")
    x = torch.randn(1, 3, 224, 224)
    torch.manual_seed(0)
    a = randomize_bn_stats(build_model(variant), seed=1)
    torch.manual_seed(1)
    b = randomize_bn_stats(build_model(variant), seed=2)
    with torch.no_grad():
        a(x)  # would fill a cache
        a.load_state_dict(b.state_dict())
        assert torch.equal(a(x), b(x))


def test_mit_linear_and_quadratic_attention_agree():
    torch.manual_seed(0)
    att = LiteMLA(64, dim=16).eval()
    qkv = torch.randn(1, 2 * 3 * 64, 4, 6)
    with torch.no_grad():
        lin, quad = att.relu_linear_att(qkv), att.relu_quadratic_att(qkv)
    torch.testing.assert_close(lin, quad, rtol=1e-4, atol=1e-5)


def test_mit_uses_quadratic_attention_only_on_tiny_maps(monkeypatch):
    att = LiteMLA(64, dim=16).eval()
    calls = []
    monkeypatch.setattr(att, "relu_quadratic_att", lambda qkv: calls.append(qkv.shape) or att.relu_linear_att(qkv))
    with torch.no_grad():
        att(torch.randn(1, 64, 4, 4))  # 16 tokens == head dim -> quadratic
        att(torch.randn(1, 64, 4, 8))  # 32 tokens -> linear
    assert len(calls) == 1
