"""The EfficientViT-L series: the authors' architecture (mit-han-lab/efficientvit
efficientvit/models/efficientvit/{backbone,cls,seg}.py and models/nn/ops.py), checked three ways:

- params and MACs against the high-resolution paper (L1) and the authors' READMEs (the rest);
- a state dict with exactly the authors' keys and shapes loads strictly, and one key short fails: the
  key list is derived here, independently of edgekit's model code, by walking upstream's constructors
  (EfficientViTLargeBackbone with its default block_list/expand_list/fewer_norm_list, ClsHead, SegHead,
  ConvLayer/LinearLayer/LiteMLA/MBConv/FusedMBConv/ResBlock parameter names);
- the deploy form (BatchNorm folded) computes what the source model computes.
Building them is cheap; exporting them is slow (the every-variant tests, `-m slow`).
"""

from __future__ import annotations

import pytest
import torch

from edgekit.complexity import measure
from edgekit.errors import EdgekitError
from edgekit.models import build_model
from edgekit.registry import VARIANTS, agrees_with_paper, get_variant

L_VARIANTS = ["l1-cls", "l2-cls", "l3-cls", "l1-seg-cityscapes", "l2-seg-cityscapes", "l1-seg-ade20k", "l2-seg-ade20k"]
SLOW = pytest.mark.slow  # building the larger ones costs seconds each: l1-cls is the default check


# ---- upstream's parameter names and shapes, written from its constructors -----------------------
def _conv(keys: dict, p: str, cin: int, cout: int, k: int = 1, groups: int = 1, bias: bool = False,
          norm: str | None = "bn2d") -> None:
    """models/nn/ops.py ConvLayer: `conv` (and `norm` when given)."""
    keys[f"{p}.conv.weight"] = (cout, cin // groups, k, k)
    if bias:
        keys[f"{p}.conv.bias"] = (cout,)
    if norm == "bn2d":
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{p}.norm.{name}"] = (cout,)
        keys[f"{p}.norm.num_batches_tracked"] = ()


def _mbconv(keys, p, cin, cout, expand, fewer_norm):
    mid = round(cin * expand)
    _conv(keys, f"{p}.inverted_conv", cin, mid, 1, bias=fewer_norm, norm=None if fewer_norm else "bn2d")
    _conv(keys, f"{p}.depth_conv", mid, mid, 3, groups=mid, bias=fewer_norm, norm=None if fewer_norm else "bn2d")
    _conv(keys, f"{p}.point_conv", mid, cout, 1)


def _fmbconv(keys, p, cin, cout, expand, fewer_norm):
    mid = round(cin * expand)
    _conv(keys, f"{p}.spatial_conv", cin, mid, 3, bias=fewer_norm, norm=None if fewer_norm else "bn2d")
    _conv(keys, f"{p}.point_conv", mid, cout, 1)


def _litemla(keys, p, c, dim=32, scales=(5,)):
    heads = c // dim
    total = heads * dim
    _conv(keys, f"{p}.qkv", c, 3 * total, 1, norm=None)
    for i, s in enumerate(scales):
        keys[f"{p}.aggreg.{i}.0.weight"] = (3 * total, 1, s, s)
        keys[f"{p}.aggreg.{i}.1.weight"] = (3 * total, 3 * total // (3 * heads), 1, 1)
    _conv(keys, f"{p}.proj", total * (1 + len(scales)), c, 1)


def _large_backbone(keys, width_list, depth_list):
    blocks, expands, fewer = ["res", "fmb", "fmb", "mb", "att"], [1, 4, 4, 4, 6], [False, False, False, True, True]
    _conv(keys, "backbone.stages.0.op_list.0", 3, width_list[0], 3)
    for j in range(depth_list[0]):  # ResBlock, expand 1
        _conv(keys, f"backbone.stages.0.op_list.{1 + j}.main.conv1", width_list[0], width_list[0], 3)
        _conv(keys, f"backbone.stages.0.op_list.{1 + j}.main.conv2", width_list[0], width_list[0], 3)
    cin = width_list[0]
    for i in range(1, 5):
        w, d = width_list[i], depth_list[i]
        first = "fmb" if blocks[i] == "fmb" else "mb"
        (_fmbconv if first == "fmb" else _mbconv)(keys, f"backbone.stages.{i}.op_list.0.main", cin, w,
                                                  expands[i] * 4, fewer[i])
        cin = w
        for j in range(1, d + 1):
            p = f"backbone.stages.{i}.op_list.{j}"
            if blocks[i] == "att":
                _litemla(keys, f"{p}.context_module.main", w)
                _mbconv(keys, f"{p}.local_module.main", w, w, expands[i], True)
            else:
                (_fmbconv if blocks[i] == "fmb" else _mbconv)(keys, f"{p}.main", w, w, expands[i], fewer[i])


def upstream_keys(name: str) -> dict[str, tuple[int, ...]]:
    width = {"l1": [32, 64, 128, 256, 512], "l2": [32, 64, 128, 256, 512], "l3": [64, 128, 256, 512, 1024]}
    depth = {"l1": [1, 1, 1, 6, 6], "l2": [1, 2, 2, 8, 8], "l3": [1, 2, 2, 8, 8]}
    size = name[:2]
    keys: dict[str, tuple[int, ...]] = {}
    _large_backbone(keys, width[size], depth[size])
    if name.endswith("-cls"):  # cls.py ClsHead: ConvLayer, pool, LinearLayer(ln), LinearLayer(bias)
        w0, w1 = (6144, 6400) if size == "l3" else (3072, 3200)
        _conv(keys, "head.op_list.0", width[size][-1], w0, 1)
        keys["head.op_list.2.linear.weight"] = (w1, w0)
        keys["head.op_list.2.norm.weight"] = keys["head.op_list.2.norm.bias"] = (w1,)
        keys["head.op_list.3.linear.weight"], keys["head.op_list.3.linear.bias"] = (1000, w1), (1000,)
        return keys
    # seg.py SegHead (fmbconv middle; Cityscapes: width 256, depth 3 (L1) / 5 (L2), expand 1, no final
    # expand; ADE20K: width 128, depth 3, expand 4, final expand 8)
    cityscapes = "cityscapes" in name
    hw, hd, ex, fe = (256, 3 if size == "l1" else 5, 1, None) if cityscapes else (128, 3, 4, 8)
    for k, (cin, factor) in enumerate(zip([512, 256, 128], [4, 2, 1])):
        _conv(keys, f"head.input_ops.{k}" + (".op_list.0" if factor > 1 else ""), cin, hw, 1)
    for j in range(hd):
        _fmbconv(keys, f"head.middle.op_list.{j}.main", hw, hw, ex, False)
    n = 19 if cityscapes else 150
    if fe is not None:
        _conv(keys, "head.output_ops.0.op_list.0", hw, hw * fe, 1)
    _conv(keys, f"head.output_ops.0.op_list.{0 if fe is None else 1}", hw * (fe or 1), n, 1, bias=True, norm=None)
    return keys


@pytest.mark.parametrize("name", [n if n == "l1-cls" else pytest.param(n, marks=SLOW) for n in L_VARIANTS])
def test_params_and_macs_match_the_published_figures(name):
    v = VARIANTS[name]
    model = build_model(v)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert agrees_with_paper(params, v.paper.params_m, 0.02), (params, v.paper.params_m)
    for figure in v.paper.macs:
        gmacs = measure(v, figure.resolution).macs / 1e9
        assert agrees_with_paper(gmacs, figure.gmacs, 0.02), (figure, gmacs)


@pytest.mark.parametrize("name", ["l1-cls", *(pytest.param(n, marks=SLOW) for n in L_VARIANTS if n != "l1-cls")])
def test_the_authors_keys_and_shapes_load_strictly(name, tmp_path):
    from edgekit.checkpoints import load_weights

    variant = get_variant(name)
    model = build_model(variant)
    keys = upstream_keys(name)
    ours = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    assert ours == keys  # every name and shape, nothing more, nothing less
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(s, generator=g) if s else torch.tensor(0)) for k, s in keys.items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 0.5
    torch.save({"state_dict": state}, tmp_path / "l.pt")  # the authors' release layout
    load_weights(build_model(variant), tmp_path / "l.pt", variant)
    short = dict(state)
    dropped = next(k for k in keys if "stages.4" in k and k.endswith("qkv.conv.weight"))
    del short[dropped]
    torch.save({"state_dict": short}, tmp_path / "short.pt")
    with pytest.raises(EdgekitError, match="missing.*" + dropped.replace(".", r"\.")):
        load_weights(build_model(variant), tmp_path / "short.pt", variant)


def test_gelu_is_the_tanh_approximation_upstream_uses():
    model = build_model(get_variant("l1-cls"))
    gelus = [m for m in model.modules() if isinstance(m, torch.nn.GELU)]
    assert gelus and all(m.approximate == "tanh" for m in gelus)
    assert not any(isinstance(m, torch.nn.Hardswish) for m in model.modules())


def test_the_deploy_form_computes_the_source_model():
    from edgekit.deploy import make_deploy_form
    from edgekit.models.init import calibrated_random_init
    from edgekit.targets import get_target

    variant, size = get_variant("l1-seg-cityscapes"), (128, 256)
    torch.manual_seed(0)
    model = build_model(variant, size)
    x = torch.randn(2, 3, *size)
    calibrated_random_init(model, x.numpy(), seed=0)
    form = make_deploy_form(model, size, get_target("onnx"), "fp32")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in form.model.modules())
    with torch.no_grad():
        ref, out = model(x[:1]), form.model(x[:1])
    assert out.shape == (1, 19, 16, 32)
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-4


def test_every_norm_has_the_zoos_eps():
    """cls_model_zoo.py / seg_model_zoo.py: set_norm_eps(model, 1e-7) for the L models, 1e-5 for B."""
    norms = (torch.nn.BatchNorm2d, torch.nn.LayerNorm)
    for name, eps in (("l1-cls", 1e-7), ("b0-cls", 1e-5)):
        found = [m.eps for m in build_model(get_variant(name)).modules() if isinstance(m, norms)]
        assert found and set(found) == {eps}


def test_explicit_tanh_gelu_is_exact_and_runs_in_executorch_as_tanh(tmp_path):
    """ExecuTorch's XNNPACK delegate computes gelu(approximate="tanh") as the erf GELU; the written-out
    form is what the ExecuTorch target exports, and it keeps the tanh function."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from edgekit.deploy.passes import explicit_tanh_gelu

    x = torch.linspace(-6, 6, 4096).reshape(1, 4096)
    tanh = torch.nn.functional.gelu(x, approximate="tanh")
    erf = torch.nn.functional.gelu(x)

    def run(module):
        program = to_edge_transform_and_lower(torch.export.export(module, (x,)),
                                              partitioner=[XnnpackPartitioner()]).to_executorch()
        path = tmp_path / "m.pte"
        path.write_bytes(program.buffer)
        return Runtime.get().load_program(path).load_method("forward").execute([x])[0]

    lowered = run(torch.nn.Sequential(torch.nn.GELU(approximate="tanh")))
    assert float((lowered - erf).abs().max()) < 1e-5 < float((lowered - tanh).abs().max())  # the runtime's erf
    rewritten = explicit_tanh_gelu(torch.nn.Sequential(torch.nn.GELU(approximate="tanh")))
    assert float((rewritten(x) - tanh).abs().max()) < 1e-6  # exact in PyTorch
    assert float((run(rewritten) - tanh).abs().max()) < 1e-5  # and in ExecuTorch
