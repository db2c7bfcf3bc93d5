"""The deploy form: the trained model, folded and rewritten for one target, as an ordered list of
small named passes. Each pass states whether it is exact (the same function up to float rounding);
`edgekit inspect` measures what each one costs in numbers and in time.

Which passes run is data: each target declares a `DeployPlan` in its table entry (targets/), and
`plan_rewrites` reads it with the precision:
- every target: fold BatchNorm, static-shape attention (exact);
- the seg head's bicubic upsampling as the target declares it: the exact resize-nearest +
  depthwise-conv form (for runtimes without bicubic), plus any target-specific exact passes after
  it; bilinear is an explicit opt-in, never a default; bicubic kept where the runtime has it.
- precisions that compute in fp16: fp16-safe linear attention. It is not applied to fp32
  artifacts, which stay the trained function to float rounding.
- precisions that quantise activations: the calibrated int8 attention floor.

Importing this package is instant (no torch): the target table and the CLI read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from edgekit.errors import EdgekitError
from edgekit.registry import Size

if TYPE_CHECKING:
    import torch.nn as nn


class Upsample(str, Enum):
    EXACT = "exact"  # bicubic as nearest-resize + replicate pad + separable depthwise conv
    BILINEAR = "bilinear"  # the official TFLite script's substitute (changes outputs)
    BICUBIC = "bicubic"  # keep the trained op (only where the target runs it)


@dataclass(frozen=True)
class Rewrite:
    name: str
    summary: str
    exact: bool


REWRITES = {
    r.name: r
    for r in (
        Rewrite("fold_batchnorm", "BatchNorm folded into the preceding conv / following linear", True),
        Rewrite(
            "static_attention",
            "attention with constant shapes: no Shape/Gather, no PAD, no tensor above 4-D, biases pre-gathered",
            True,
        ),
        Rewrite(
            "fp16_safe_attention",
            "keys averaged over tokens and normaliser clamped at 2^-14 (instead of +1e-15) so fp16 has no inf/NaN",
            False,
        ),
        Rewrite("bicubic_exact", "bicubic x2/x4 as resize-nearest + replicate pad + separable depthwise conv", True),
        Rewrite(
            "nearest_depth_to_space",
            "the exact upsample's nearest x2 steps as concat + depth-to-space (for runtimes without resize-nearest)",
            True,
        ),
        Rewrite(
            "polyphase_upsample",
            "the exact upsample as replicate pad + one short depthwise conv per output phase, interleaved (no resize)",
            True,
        ),
        Rewrite("bicubic_to_bilinear", "bicubic replaced by bilinear (opt-in; changes the trained function)", False),
        Rewrite(
            "bmm_attention",
            "linear attention as 3-D batched matmuls and its key sum as a matmul with ones (no broadcast expand)",
            True,
        ),
        Rewrite(
            "explicit_tanh_gelu",
            "GELU's tanh approximation (the L series) written out as mul/add/tanh (a runtime lowering it to erf GELU "
            "changes the function); nothing to do in models without it",
            True,
        ),
        Rewrite(
            "cross_layer_equalization",
            "int8: each channel's range split evenly between a conv's output and the conv reading it, wherever the "
            "traced graph lets a scale through exactly (nothing or a ReLU between them, no other reader)",
            True,
        ),
        Rewrite(
            "bias_correction",
            "int8 weights: each layer's bias less the mean shift its int8-rounded weights cause on the calibration "
            "images (empirical bias correction; the float graph is off by what the int8 weights put back)",
            False,
        ),
        Rewrite(
            "int8_attention_floor",
            "int8: attention normaliser clamped at 2/255 of its calibrated peak (below that, int8 q/k carry no signal)",
            False,
        ),
    )
}


@dataclass(frozen=True)
class DeployPlan:
    """Which passes a target runs, per precision (declared in the target's table entry)."""

    upsample: Upsample = Upsample.EXACT  # the default
    allowed_upsample: tuple[Upsample, ...] = (Upsample.EXACT, Upsample.BILINEAR)
    exact_upsample_passes: tuple[str, ...] = ()  # exact passes after bicubic_exact
    fp16_compute: tuple[str, ...] = ("fp16",)  # precisions computing in fp16: fp16-safe attention
    int8_activations: tuple[str, ...] = ("int8",)  # precisions quantising activations: calibrated floor
    attention_passes: tuple[str, ...] = ()  # exact passes after static_attention, for every precision
    exact_passes: tuple[str, ...] = ()  # other exact passes the target's runtime needs, for every precision


@dataclass
class DeployForm:
    model: nn.Module
    resolution: Size
    target: str
    rewrites: list[Rewrite] = field(default_factory=list)
    stages: list[tuple[Rewrite, nn.Module]] = field(default_factory=list)  # model after each rewrite


CALIBRATED_PASSES = ("cross_layer_equalization", "bias_correction", "int8_attention_floor")  # passes that read the calibration images


def plan_rewrites(plan: DeployPlan, precision: str, upsample: Upsample | None = None,
                  target_name: str = "this target", extra: tuple[str, ...] = ()) -> list[str]:
    """The pass names for `precision` (already checked against the target) and `upsample`; `extra`:
    the passes the target's options ask for (TargetSpec.option_passes), run before the int8 floor."""
    upsample = upsample or plan.upsample
    if upsample not in plan.allowed_upsample:
        allowed = ", ".join(u.value for u in plan.allowed_upsample)
        raise EdgekitError(f"--upsample {upsample.value} is not available for {target_name} (choose {allowed})")
    names = ["fold_batchnorm", "static_attention", *plan.attention_passes, *plan.exact_passes]
    if precision in plan.fp16_compute:
        names.append("fp16_safe_attention")
    if upsample is Upsample.EXACT:
        names += ["bicubic_exact", *plan.exact_upsample_passes]
    elif upsample is Upsample.BILINEAR:
        names.append("bicubic_to_bilinear")
    names += [n for n in extra if n not in names]
    if precision in plan.int8_activations:
        names.append("int8_attention_floor")
    return names


def deploy_rewrites(spec, precision: str, upsample: Upsample | None = None, options=None) -> list[str]:
    """The pass names a target's deploy form runs for `precision` (checked), `upsample` and its
    `options` (TargetSpec.option_passes): what export plans once and make_deploy_form applies."""
    extra = spec.option_passes(options, precision) if options is not None and spec.option_passes else ()
    return plan_rewrites(spec.plan, precision, upsample, spec.name, extra)


def upsample_of(rewrite_names: list[str]) -> Upsample:
    """The --upsample an artifact was exported with, from the rewrites its manifest records (the
    inverse of plan_rewrites' upsample choice)."""
    if "bicubic_to_bilinear" in rewrite_names:
        return Upsample.BILINEAR
    return Upsample.EXACT if "bicubic_exact" in rewrite_names else Upsample.BICUBIC


def make_deploy_form(
    model: nn.Module,
    resolution: Size,
    spec,
    precision: str | None = None,
    upsample: Upsample | None = None,
    keep_stages: bool = False,
    calibration=None,
    options=None,
    rewrites: list[str] | None = None,
) -> DeployForm:
    """Apply the target's passes (`spec`: its edgekit.targets.TargetSpec, from the table) in order to a
    copy of `model`, which is left untouched. `calibration` (N, 3, H, W) images are needed by int8 plans
    only; `options` (the target's options) may ask for more passes (TargetSpec.option_passes);
    `rewrites`: the pass names when the caller planned them already (deploy_rewrites). The deploy
    passes sit below the targets: this module never imports the table."""
    import copy

    import torch

    from edgekit.deploy.passes import PASSES

    precision = spec.check_precision(precision or spec.default_precision)
    names = rewrites if rewrites is not None else deploy_rewrites(spec, precision, upsample, options)
    current = copy.deepcopy(model).eval()
    form = DeployForm(current, resolution, spec.name)
    with torch.no_grad():
        for name in names:
            kwargs = {"calibration": calibration} if name in CALIBRATED_PASSES else {}
            current = PASSES[name](current, resolution, **kwargs)
            form.rewrites.append(REWRITES[name])
            if keep_stages:
                form.stages.append((REWRITES[name], copy.deepcopy(current)))
    form.model = current.eval()
    return form
