"""The passes behind `edgekit.deploy.REWRITES`: each takes a model, returns the rewritten model."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from edgekit.deploy.attention import StaticLiteMLA, StaticLocalWindowAttention
from edgekit.deploy.equalization import cross_layer_equalization, observe
from edgekit.deploy.upsample import BilinearUpsample, ExactBicubicUpsample
from edgekit.models.efficientvit_mit import LiteMLA, UpSampleLayer
from edgekit.models.efficientvit_msra import LocalWindowAttention
from edgekit.registry import Size

Pass = Callable[[nn.Module, Size], nn.Module]


def fold_batchnorm(model: nn.Module, resolution: Size | None = None) -> nn.Module:
    """The folding walker: every module that owns `fuse()` is replaced by what it returns."""
    for name, child in model.named_children():
        if hasattr(child, "fuse"):
            setattr(model, name, child.fuse())
        else:
            fold_batchnorm(child)
    return model


def input_shapes(model: nn.Module, resolution: Size, types: tuple[type, ...]) -> dict[str, tuple[int, ...]]:
    """Input shape of every submodule of `types` at batch 1, from a free forward on the meta device."""
    probe = copy.deepcopy(model).to("meta")
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable:
        def hook(_module: nn.Module, args: tuple) -> None:  # returning None keeps the inputs as they are
            shapes.setdefault(name, tuple(args[0].shape))

        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in probe.named_modules() if isinstance(m, types)]
    with torch.no_grad():
        dtype = next(probe.parameters()).dtype
        probe(torch.empty(1, 3, *resolution, device="meta", dtype=dtype))
    for h in hooks:
        h.remove()
    return shapes


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def static_attention(model: nn.Module, resolution: Size) -> nn.Module:
    for name, shape in input_shapes(model, resolution, (LiteMLA, LocalWindowAttention)).items():
        module = model.get_submodule(name)
        if isinstance(module, LiteMLA):
            _replace(model, name, StaticLiteMLA(module, (shape[2], shape[3])))
        else:
            _replace(model, name, StaticLocalWindowAttention(module, batch=shape[0]))
    return model


def fp16_safe_attention(model: nn.Module, resolution: Size) -> nn.Module:
    """Switches the static attention blocks to their fp16-safe arithmetic (see deploy/attention.py)."""
    for m in model.modules():
        if isinstance(m, StaticLiteMLA):
            m.make_fp16_safe()
    return model


INT8_FLOOR_STEPS = 0.25  # the floor sits this many int8 steps (of the observed range) above zero


def int8_attention_floor(model: nn.Module, resolution: Size, calibration=None) -> nn.Module:
    """Clamp each LiteMLA normaliser at a quarter of an int8 step (1/255) of its largest value on the
    calibration images.

    In an int8 model the attention core stays float, but q and k arrive int8-quantised; where the
    normaliser sum_j k_j.q is within a quantisation step of zero, the ratio num/den is quantisation
    noise divided by quantisation noise, and at exactly zero (an all-zero query) 0/0. A quarter step
    keeps the fp32 function within 55-64 dB of the trained one (docs/int8.md); `edgekit inspect
    --precision int8` reports the change.
    """
    if calibration is None:
        raise ValueError("int8_attention_floor needs calibration images")
    blocks = [m for m in model.modules() if isinstance(m, StaticLiteMLA)]
    peaks = {id(m): 0.0 for m in blocks}

    def observe(m: StaticLiteMLA, plain: Callable) -> Callable:
        def stabilise(den: torch.Tensor) -> torch.Tensor:
            peaks[id(m)] = max(peaks[id(m)], float(den.max()))
            return plain(den)

        return stabilise

    for m in blocks:
        m._stabilise = observe(m, m._stabilise)  # instance attribute shadows the method
    with torch.no_grad():
        for x in calibration:
            model(torch.from_numpy(np.ascontiguousarray(x[None])).to(next(model.parameters()).dtype))
    for m in blocks:
        del m._stabilise
        m.den_floor = peaks[id(m)] * INT8_FLOOR_STEPS / 255.0
    return model


def bmm_attention(model: nn.Module, resolution: Size) -> nn.Module:
    """Attention in the ops ExecuTorch's XNNPACK partitioner takes: LiteMLA's linear attention as 3-D
    batched matmuls (heads folded into the batch) and its key sum as a matmul with ones; the Microsoft
    cascaded group attention with slices instead of splits and its biases expanded to the window batch.
    Measured: b0-seg 12 -> 4 XNNPACK partitions (24 expand_copy + 4 sum had stayed outside; the seg
    head's exact upsample is what remains); m0-cls 80 -> 1 (96 expand_copy, 31 split, 24 select had)."""
    for m in model.modules():
        if isinstance(m, StaticLiteMLA):
            m.bmm = True
        elif isinstance(m, StaticLocalWindowAttention):
            m.attn.set_bmm(m.windows() * m.batch)
    return model


def _swap_upsample(model: nn.Module, resolution: Size, make: Callable[[UpSampleLayer, int], nn.Module]) -> nn.Module:
    for name, shape in input_shapes(model, resolution, (UpSampleLayer,)).items():
        module = model.get_submodule(name)
        if module.mode == "bicubic":
            _replace(model, name, make(module, shape[1]))
    return model


def bicubic_exact(model: nn.Module, resolution: Size) -> nn.Module:
    return _swap_upsample(model, resolution, lambda m, channels: ExactBicubicUpsample(m.factor, channels))


def nearest_depth_to_space(model: nn.Module, resolution: Size) -> nn.Module:
    for m in model.modules():
        if isinstance(m, ExactBicubicUpsample):
            m.depth_to_space = True
    return model


def polyphase_upsample(model: nn.Module, resolution: Size) -> nn.Module:
    for m in model.modules():
        if isinstance(m, ExactBicubicUpsample):
            m.use_polyphase()
    return model


class TanhGELU(nn.Module):
    """GELU's tanh approximation written out: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the
    formula PyTorch computes for approximate="tanh", as plain mul/add/tanh ops."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def explicit_tanh_gelu(model: nn.Module, resolution: Size | None = None) -> nn.Module:
    """Every nn.GELU(approximate="tanh") (the L series) as TanhGELU. Measured: ExecuTorch's XNNPACK
    delegate (executorch 1.5.1) lowers aten.gelu with approximate="tanh" to the exact erf GELU (a
    lone gelu .pte: 9.5e-7 from erf, 4.7e-4 from tanh on [-6, 6]), which cost l1-seg-cityscapes
    7.7e-4 max rel error; the written-out form is lowered op by op."""
    for name, child in model.named_children():
        if isinstance(child, nn.GELU) and child.approximate == "tanh":
            setattr(model, name, TanhGELU())
        else:
            explicit_tanh_gelu(child)
    return model


def bicubic_to_bilinear(model: nn.Module, resolution: Size) -> nn.Module:
    return _swap_upsample(model, resolution, lambda m, channels: BilinearUpsample(m.factor))


def int8_weights(weight: torch.Tensor) -> torch.Tensor:
    """`weight` as the int8 weight quantisers of TFLite and ONNX Runtime (QInt8, symmetric) store it:
    per output channel, symmetric, scale max|w| / 127, rounded to the nearest of [-127, 127]."""
    scale = weight.abs().amax(dim=tuple(range(1, weight.dim())), keepdim=True).clamp_min(1e-30) / 127
    return torch.round(weight / scale).clamp(-127, 127) * scale


def bias_correction(model: nn.Module, resolution: Size, calibration=None) -> nn.Module:
    """Empirical bias correction of int8 weights (Nagel et al., ICCV 2019, section 4.2): rounding a
    layer's weights to int8 (`int8_weights`) shifts its output's mean by dW . E[x], dW the rounding
    error and E[x] the layer's mean input per channel on the calibration images; subtracting that shift
    from the bias cancels it. Not exact: in float the layer is then off by -dW . E[x], which the int8
    weights put back. Every Conv2d and Linear; a convolution's border pixels (padding) are counted as
    if they saw the mean too. The layers are measured in the float model, before any correction."""
    if calibration is None:
        raise ValueError("bias_correction needs calibration images")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    sums: dict[int, torch.Tensor] = {}

    def hook(module, inputs):
        x = inputs[0].detach().double()
        mean = x.mean(dim=tuple(i for i in range(x.dim()) if i != (1 if x.dim() == 4 else x.dim() - 1)))
        sums[id(module)] = sums.get(id(module), 0) + mean

    observe(model, calibration, [m.register_forward_pre_hook(hook) for m in layers])
    with torch.no_grad():
        for m in layers:
            if id(m) not in sums:
                continue  # never called at this resolution
            mean = (sums[id(m)] / len(calibration)).float()
            error = int8_weights(m.weight) - m.weight
            if isinstance(m, nn.Linear):
                shift = error @ mean
            else:
                groups, per_group = m.groups, m.in_channels // m.groups
                error = error.sum(dim=(2, 3)).view(groups, m.out_channels // groups, per_group)
                shift = torch.einsum("goi,gi->go", error, mean.view(groups, per_group)).reshape(-1)
            if m.bias is None:
                m.bias = nn.Parameter(torch.zeros(m.weight.shape[0], dtype=m.weight.dtype))
            m.bias.sub_(shift)
            m.bias_correction = shift  # what `without_bias_correction` adds back
    return model


def without_bias_correction(model: nn.Module) -> nn.Module:
    """A copy of `model` with every `bias_correction` undone: the float function the int8 weights with
    corrected biases stand for (the reference to judge them against; the corrected float graph is,
    on purpose, off from it)."""
    import copy

    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.modules():
            shift = getattr(m, "bias_correction", None)
            if shift is not None:
                m.bias.add_(shift)
                del m.bias_correction
    return model


PASSES: dict[str, Pass] = {
    "fold_batchnorm": fold_batchnorm,
    "static_attention": static_attention,
    "fp16_safe_attention": fp16_safe_attention,
    "bicubic_exact": bicubic_exact,
    "nearest_depth_to_space": nearest_depth_to_space,
    "polyphase_upsample": polyphase_upsample,
    "bicubic_to_bilinear": bicubic_to_bilinear,
    "int8_attention_floor": int8_attention_floor,
    "bmm_attention": bmm_attention,
    "explicit_tanh_gelu": explicit_tanh_gelu,
    "cross_layer_equalization": cross_layer_equalization,
    "bias_correction": bias_correction,
}
