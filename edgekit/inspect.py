"""`edgekit inspect`: what the deploy form for a target contains and what each rewrite costs.

Every number is measured here, on real photographs: each rewrite's output change against the step
before it and against the trained model, the choice of upsampling (the trained bicubic, the exact
form, bilinear) with its pixel-argmax agreement and CPU time, an fp16 forward of the deploy form,
and the exported ONNX graph's op histogram. CPU times are PyTorch on this machine (denormals
flushed), meaningful only as ratios between forms measured in the same run.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgekit.deploy import Upsample, make_deploy_form, plan_rewrites
from edgekit.deploy.attention import (
    TRANSPOSES_PER_CGA_HEAD,
    TRANSPOSES_PER_LITEMLA,
    StaticCascadedGroupAttention,
    StaticLiteMLA,
)
from edgekit.deploy.passes import bicubic_exact, bicubic_to_bilinear, fp16_safe_attention
from edgekit.metrics import compare
from edgekit.reference import run_images, source_model
from edgekit.registry import Size, get_variant, parse_resolution
from edgekit.targets import DEFAULT_TARGET

FP16_SQNR_TARGET_DB = 40.0
SHAPE_OPS = ("Shape", "Gather", "ConstantOfShape")
RANDOM_WEIGHTS_NOTE = (
    "no --weights: random weights with BatchNorm statistics estimated on the built-in photos; "
    "the numbers show the rewrites' arithmetic, not a trained model's accuracy"
)


def cpu_latency_ms(models: dict[str, nn.Module], image: np.ndarray, runs: int) -> dict[str, float]:
    """Median PyTorch CPU time of one forward per model, measured round-robin so that drifting load
    on the machine hits every model alike; denormals flushed so random BN stats cannot skew it."""
    x = torch.from_numpy(image[None])
    times: dict[str, list[float]] = {name: [] for name in models}
    previous = torch.set_flush_denormal(True)
    try:
        with torch.no_grad():
            for model in models.values():
                model(x)  # warm-up
            for _ in range(runs):
                for name, model in models.items():
                    t0 = time.perf_counter()
                    model(x)
                    times[name].append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_flush_denormal(previous)
    return {name: statistics.median(t) for name, t in times.items()}


def expected_transposes(model: nn.Module) -> int:
    lite = sum(isinstance(m, StaticLiteMLA) for m in model.modules())
    heads = sum(m.num_heads for m in model.modules() if isinstance(m, StaticCascadedGroupAttention))
    return lite * TRANSPOSES_PER_LITEMLA + heads * TRANSPOSES_PER_CGA_HEAD


def onnx_summary(model: nn.Module, resolution: Size) -> dict:
    from edgekit.targets.onnx import export_onnx, load_graph, max_tensor_rank, op_histogram

    with tempfile.TemporaryDirectory() as tmp:
        graph = load_graph(export_onnx(model, resolution, Path(tmp) / "deploy.onnx"))
    ops = op_histogram(graph)
    return {
        "ops": ops,
        "nodes": sum(ops.values()),
        "transposes": ops.get("Transpose", 0),
        "transposes_needed": expected_transposes(model),
        "shape_ops": sum(ops.get(o, 0) for o in SHAPE_OPS),
        "batchnorm_nodes": ops.get("BatchNormalization", 0),
        "max_rank": max_tensor_rank(graph),
    }


def _upsample_options(base: nn.Module, resolution: Size, images: np.ndarray, reference: np.ndarray,
                      runs: int, task: str) -> list[dict]:
    """The trained bicubic against its exact form and bilinear, each on the same folded model."""
    models = {
        "bicubic": base,
        "exact": bicubic_exact(copy.deepcopy(base), resolution),
        "bilinear": bicubic_to_bilinear(copy.deepcopy(base), resolution),
    }
    ms = cpu_latency_ms(models, images[0], runs)
    return [
        {"upsample": mode, "vs_trained": _summary(compare(reference, run_images(model, images), task)), "cpu_ms": ms[mode],
         "cpu_ratio": ms[mode] / ms["bicubic"]}
        for mode, model in models.items()
    ]


def _summary(result: dict) -> dict:
    """A comparison without its per-image rows (the tables show the aggregate)."""
    return {k: v for k, v in result.items() if k != "images"}


def inspect_variant(
    name: str,
    target: str = DEFAULT_TARGET,
    resolution: str | None = None,
    weights: str | Path | None = None,
    upsample: Upsample | None = None,
    precision: str | None = None,
    image_paths: list[Path] | None = None,
    runs: int = 3,
    progress=lambda _msg: None,
) -> dict:
    from edgekit.calibration.images import image_batch, verification_images
    from edgekit.targets import get_target

    variant = get_variant(name)
    size = parse_resolution(resolution, variant)
    spec = get_target(target)
    precision = spec.check_precision((precision or spec.default_precision).lower())
    plan_rewrites(spec.plan, precision, upsample, spec.name)  # an upsample the target cannot take: before work
    paths = image_paths or verification_images(variant.dataset)
    images = image_batch(variant, size, paths)
    progress(f"building {variant.name} at {size[0]}x{size[1]}")
    model, _ = source_model(variant, size, Path(weights) if weights is not None else None)
    calibration = None
    if spec.needs_calibration(precision):
        from edgekit.calibration.sources import calibration_set

        calibration = calibration_set(variant, size).data
    progress(f"applying the {spec.name} {precision} rewrites")
    form = make_deploy_form(model, size, spec, precision, upsample, keep_stages=True, calibration=calibration)

    task = variant.task
    trained = run_images(model, images)
    steps, previous = [], trained
    for rewrite, stage in form.stages:
        progress(f"measuring {rewrite.name}")
        out = run_images(stage, images)
        steps.append({"name": rewrite.name, "summary": rewrite.summary, "exact": rewrite.exact,
                      "vs_previous": _summary(compare(previous, out, task)),
                      "vs_trained": _summary(compare(trained, out, task))})
        previous = out

    # The fp16 check runs the deploy form with the fp16-safe attention (what fp16 artifacts carry).
    progress("running the deploy form in fp16")
    fp16_form = form.model if precision in spec.plan.fp16_compute else \
        fp16_safe_attention(copy.deepcopy(form.model), size)
    fp32 = run_images(fp16_form, images)
    fp16 = run_images(fp16_form, images, torch.float16)
    progress("timing the trained model and the deploy form")
    ms = cpu_latency_ms({"trained": model, "deploy": form.model}, images[0], runs)
    progress("exporting the deploy form to ONNX")
    result = {
        "variant": variant.name,
        "task": variant.task,
        "target": spec.name,
        "precision": precision,
        "resolution": list(size),
        "weights": str(weights) if weights else None,
        "weights_note": None if weights else RANDOM_WEIGHTS_NOTE,
        "images": [p.name for p in paths],
        "rewrites": steps,
        "cpu_ms": {**ms, "ratio": ms["deploy"] / ms["trained"]},
        "fp16": {**_summary(compare(fp32, fp16, task)), "sqnr_target_db": FP16_SQNR_TARGET_DB},
        "graph": onnx_summary(form.model, size),
    }
    if variant.task == "seg":
        progress("comparing the upsampling choices")
        folded = form.stages[1][1]  # after folding and static attention, before any upsample swap
        result["upsample_options"] = _upsample_options(folded, size, images, trained, runs, task)
    return result


def quantization_analysis(
    name: str,
    target: str = DEFAULT_TARGET,
    resolution: str | None = None,
    weights: str | Path | None = None,
    precision: str | None = None,
    image_paths: list[Path] | None = None,
    num_calibration: int = 8,
    progress=lambda _msg: None,
) -> dict:
    """`edgekit inspect --quantization`: which quantised tensors cost the fidelity, on held-out photos.

    Each op the target quantises is made int8 alone (everything else float) and ranked by the SQNR of
    the output against the same graph in float; then full int8, and int8 with the most costly ops
    kept float, each measured. The photos are the variant's verification set (or the user's), never
    the calibration ones."""
    from edgekit.calibration.images import image_batch, verification_images
    from edgekit.calibration.sources import calibration_set
    from edgekit.errors import EdgekitError
    from edgekit.targets import TARGETS, get_target
    from edgekit.targets.base import QuantizationJob

    variant = get_variant(name)
    size = parse_resolution(resolution, variant)
    spec = get_target(target)
    if spec.quantization is None:
        raise EdgekitError(f"--quantization is not available for {spec.name} (targets with it: "
                           f"{', '.join(t for t, s in TARGETS.items() if s.quantization)})")
    calibrated_precisions = [p for p in spec.precisions if spec.needs_calibration(p)]
    precision = spec.check_precision((precision or calibrated_precisions[0]).lower())
    if precision not in calibrated_precisions:
        raise EdgekitError(f"--quantization analyses a calibrated precision ({', '.join(calibrated_precisions)}), "
                           f"not {precision}")
    paths = image_paths or verification_images(variant.dataset)
    progress(f"building {variant.name} at {size[0]}x{size[1]}")
    model, _ = source_model(variant, size, Path(weights) if weights is not None else None)
    calib = calibration_set(variant, size, None, num_calibration)
    form = make_deploy_form(model, size, spec, precision, calibration=calib.data)
    with tempfile.TemporaryDirectory(prefix="edgekit-quant-") as work:
        found = spec.quantization(QuantizationJob(variant, size, precision, form.model, calib.data,
                                                  image_batch(variant, size, paths), tuple(p.name for p in paths),
                                                  Path(work), progress))
    return {"variant": variant.name, "target": spec.name, "precision": precision, "resolution": list(size),
            "weights": str(weights) if weights else None, "weights_note": None if weights else RANDOM_WEIGHTS_NOTE,
            "calibration": [i["name"] for i in calib.images], **found}
