"""The deploy form: the trained model, folded and rewritten for one target, as an ordered list of
small named passes. Each pass states whether it is exact (the same function up to float rounding);
`edgekit inspect` measures what each one costs in numbers and in time.

Which passes run is data (`TARGET_PLANS`), chosen per target and precision:
- every target: fold BatchNorm, static-shape attention (exact);
- tflite / coreml: bicubic upsampling as an exact resize-nearest + depthwise-conv form (neither runs
  bicubic); bilinear is an explicit opt-in, never a default. onnx keeps bicubic (ONNX Resize has a
  cubic mode matching torch).
- fp16 precision (TFLite fp16, CoreML's default): fp16-safe linear attention. It is not applied to
  fp32 artifacts, which stay the trained function to float rounding; run the fp16 artifact, not the
  fp32 one, on fp16 hardware (TFLite's GPU delegate computes fp32 models in fp16 by default).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import Enum

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.registry import Size


class Target(str, Enum):
    ONNX = "onnx"
    TFLITE = "tflite"
    COREML = "coreml"


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
            "tflite: the exact upsample's nearest x2 steps as concat + depth-to-space (XNNPACK has no resize-nearest)",
            True,
        ),
        Rewrite("bicubic_to_bilinear", "bicubic replaced by bilinear (opt-in; changes the trained function)", False),
        Rewrite(
            "int8_attention_floor",
            "int8: attention normaliser clamped at 2/255 of its calibrated peak (below that, int8 q/k carry no signal)",
            False,
        ),
    )
}


FP16_PRECISIONS = ("fp16",)
INT8_PRECISIONS = ("int8",)  # full-integer; dynamic-range int8 keeps float activations


@dataclass(frozen=True)
class TargetPlan:
    upsample: Upsample
    allowed_upsample: tuple[Upsample, ...]
    precisions: tuple[str, ...]  # the first is the default

    @property
    def default_precision(self) -> str:
        return self.precisions[0]


TARGET_PLANS = {
    Target.ONNX: TargetPlan(Upsample.BICUBIC, tuple(Upsample), ("fp32",)),
    Target.TFLITE: TargetPlan(
        Upsample.EXACT, (Upsample.EXACT, Upsample.BILINEAR), ("fp32", "fp16", "int8-dynamic", "int8")
    ),
    Target.COREML: TargetPlan(
        Upsample.EXACT, (Upsample.EXACT, Upsample.BILINEAR), ("fp16", "fp32", "int8-weights", "int8")
    ),
}


def fp16_compute(target: Target, precision: str) -> bool:
    """fp16 artifacts, and CoreML's int8 models (they dequantise to fp16 compute)."""
    return precision in FP16_PRECISIONS or (target is Target.COREML and precision in ("int8-weights", "int8"))


def check_precision(target: Target, precision: str) -> str:
    allowed = TARGET_PLANS[target].precisions
    if precision not in allowed:
        raise EdgekitError(f"--precision {precision!r} is not one of: {', '.join(allowed)} (for {target.value})")
    return precision


@dataclass
class DeployForm:
    model: nn.Module
    resolution: Size
    target: Target
    rewrites: list[Rewrite] = field(default_factory=list)
    stages: list[tuple[Rewrite, nn.Module]] = field(default_factory=list)  # model after each rewrite


def plan_rewrites(target: Target, precision: str | None = None, upsample: Upsample | None = None) -> list[str]:
    plan = TARGET_PLANS[target]
    precision = check_precision(target, precision or plan.default_precision)
    upsample = upsample or plan.upsample
    if upsample not in plan.allowed_upsample:
        allowed = ", ".join(u.value for u in plan.allowed_upsample)
        raise EdgekitError(f"--upsample {upsample.value} is not available for {target.value} (choose {allowed})")
    names = ["fold_batchnorm", "static_attention"]
    if fp16_compute(target, precision):
        names.append("fp16_safe_attention")
    if upsample is Upsample.EXACT:
        names.append("bicubic_exact")
        if target is Target.TFLITE:
            names.append("nearest_depth_to_space")
    elif upsample is Upsample.BILINEAR:
        names.append("bicubic_to_bilinear")
    if precision in INT8_PRECISIONS:
        names.append("int8_attention_floor")
    return names


def upsample_of(rewrite_names: list[str]) -> Upsample:
    """The --upsample an artifact was exported with, from the rewrites its manifest records (the
    inverse of plan_rewrites' upsample choice)."""
    if "bicubic_to_bilinear" in rewrite_names:
        return Upsample.BILINEAR
    return Upsample.EXACT if "bicubic_exact" in rewrite_names else Upsample.BICUBIC


def make_deploy_form(
    model: nn.Module,
    resolution: Size,
    target: Target,
    precision: str | None = None,
    upsample: Upsample | None = None,
    keep_stages: bool = False,
    calibration=None,
) -> DeployForm:
    """Apply the target's passes in order to a copy of `model` (which is left untouched).

    `calibration` (N, 3, H, W) images are needed by the int8 plan only."""
    from edgekit.deploy.passes import PASSES

    names = plan_rewrites(target, precision, upsample)
    current = copy.deepcopy(model).eval()
    form = DeployForm(current, resolution, target)
    with torch.no_grad():
        for name in names:
            extra = {"calibration": calibration} if name == "int8_attention_floor" else {}
            current = PASSES[name](current, resolution, **extra)
            form.rewrites.append(REWRITES[name])
            if keep_stages:
                form.stages.append((REWRITES[name], copy.deepcopy(current)))
    form.model = current.eval()
    return form
