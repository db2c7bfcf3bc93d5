"""The CoreML conversion: the deploy form (calibrated to int8 on the torch side where asked, with the
recipe search) through torch.export and coremltools to an mlprogram package."""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import EdgekitError, first_line
from edgekit.targets.base import (
    Converted,
    ConvertJob,
)
from edgekit.targets.coreml.options import INPUT_NAME, MODEL_FILE, NO_INT16_HERE, OUTPUT_NAME, QUANTISER

if TYPE_CHECKING:
    import torch.nn as nn


def normalized(model: nn.Module, mean, std) -> nn.Module:
    """`model` behind (x - mean) / std per channel, on x already in [0, 1] (the image-input form;
    the wrapped model is the attribute `model`, so its weights are named model.*)."""
    import torch
    import torch.nn as nn

    class Normalize(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.register_buffer("scale", 1.0 / torch.tensor(std).view(1, 3, 1, 1))
            self.register_buffer("shift", -torch.tensor(mean).view(1, 3, 1, 1) / torch.tensor(std).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x * self.scale + self.shift)

    return Normalize()


def calibrated_int8(deploy: nn.Module, calibration: np.ndarray, keep_float: tuple[str, ...] = ()) -> nn.Module:
    """Weights and activations int8 on the torch side (coremltools.optimize.torch), calibrated on
    `calibration` (N, 3, H, W) normalised images: observers only, no training, then finalised into
    quantize/dequantize pairs that coremltools turns into CoreML int8 ops (iOS 17+). The modules
    named in `keep_float` (and everything inside them) are left float (module_name_configs None)."""
    import torch
    from coremltools.optimize.torch.quantization import (
        LinearQuantizer,
        LinearQuantizerConfig,
        ModuleLinearQuantizerConfig,
    )

    steps = len(calibration)
    # milestones: observers on from step 0; fake quantisation and observer freezing only after the
    # calibration batches; BN is already folded.
    config = LinearQuantizerConfig(global_config=ModuleLinearQuantizerConfig(
        quantization_scheme="symmetric", milestones=[0, steps, steps, 0]),
        module_name_configs=dict.fromkeys(keep_float))
    x = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantizer = LinearQuantizer(deploy.eval(), config)
        prepared = quantizer.prepare(example_inputs=(x[:1],), inplace=False)
        prepared.train()
        with torch.no_grad():
            for i in range(steps):
                prepared(x[i : i + 1])
                quantizer.step()
        prepared.eval()
        return quantizer.finalize(inplace=False).eval()


def convert(deploy: nn.Module, size: tuple[int, int], precision: str, ios: int, image_input: bool, mean, std,
            labels: list[str] | None, metadata: dict[str, str]):
    """An MLModel (not yet saved). For int8, `deploy` is the calibrated model from calibrated_int8."""
    import coremltools as ct
    import torch

    model = normalized(deploy, mean, std).eval() if image_input else deploy.eval()
    x = torch.rand(1, 3, *size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # coremltools reads the quantize/dequantize pairs of a quantised model from TorchScript.
        program = torch.jit.trace(model, (x,)) if precision == "int8" else \
            torch.export.export(model, (x,)).run_decompositions({})
    inputs = [ct.ImageType(name=INPUT_NAME, shape=x.shape, scale=1 / 255.0, color_layout=ct.colorlayout.RGB)
              if image_input else ct.TensorType(name=INPUT_NAME, shape=x.shape)]
    try:
        ml = ct.convert(
            program,
            inputs=inputs,
            outputs=None if labels else [ct.TensorType(name=OUTPUT_NAME)],
            classifier_config=ct.ClassifierConfig(labels) if labels else None,
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16 if precision != "fp32" else ct.precision.FLOAT32,
            minimum_deployment_target=getattr(ct.target, f"iOS{ios}"),
        )
    except Exception as e:
        raise EdgekitError(f"coremltools conversion failed: {first_line(e)}") from e
    if precision == "int8-weights":
        from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

        ml = linear_quantize_weights(ml, OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric")))
    ml.short_description = metadata.get("description", "")
    ml.author = "edgekit"
    ml.license = metadata.get("license", "")
    ml.version = metadata.get("version", "")
    ml.user_defined_metadata.update({k: str(v) for k, v in metadata.items()})
    return ml


def mil_ops(ml) -> dict[str, int]:
    spec = ml.get_spec()
    main = spec.mlProgram.functions["main"]
    block = main.block_specializations[main.opset]
    counts = Counter(op.type for op in block.operations if op.type != "const")
    return dict(sorted(counts.items()))


def describe_io(ml) -> dict:
    spec = ml.get_spec()
    inp, out = spec.description.input[0], spec.description.output
    kind = inp.type.WhichOneof("Type")
    if kind == "imageType":
        shape = [1, 3, inp.type.imageType.height, inp.type.imageType.width]
        dtype = "image RGB (CVPixelBuffer)"
    else:
        shape = list(inp.type.multiArrayType.shape)
        dtype = "float32 tensor, normalised"
    return {"input": {"name": inp.name, "shape": shape, "layout": "NCHW", "dtype": dtype},
            "output": [{"name": o.name, "type": o.type.WhichOneof("Type")} for o in out]}


def _convert(job: ConvertJob) -> Converted:
    """The package, its MIL ops and I/O, and the torch model that was converted (the deploy form, or
    its calibrated int8 version)."""
    from edgekit import __version__
    from edgekit.labels import class_names

    variant, opts = job.variant, job.options
    job.progress(f"converting to CoreML {job.precision} (torch.export, coremltools, iOS {opts.ios})")
    metadata = {
        "description": f"EfficientViT {variant.name}: {variant.output_semantics}",
        "license": "model code: edgekit; weights: see the checkpoint's licence",
        "version": __version__,
        "variant": variant.name,
        "resolution": f"{job.size[0]}x{job.size[1]}",
        "edgekit_version": __version__,
    }
    labels = class_names(variant) if variant.task == "cls" else None
    deploy, recipe = job.deploy, None
    if job.precision == "int8":
        deploy, recipe = _int8(job)
    with _temp_packages_in(job.work):
        ml = convert(deploy, job.size, job.precision, opts.ios, opts.input == "image", variant.mean, variant.std,
                     labels, metadata)
        model_file = job.out / MODEL_FILE
        ml.save(str(model_file))
        info = {"int8": recipe.to_json()} if recipe else {}
        return Converted(model_file, mil_ops(ml), describe_io(ml), target_info=info,
                         torch_model=deploy, searched_rewrites=recipe.rewrites if recipe else ())


def _int8(job: ConvertJob) -> tuple[nn.Module, dict]:
    """The calibrated int8 torch model coremltools converts, and its recipe: --keep-float N fixed, or
    the recipe search on these weights (judged in PyTorch: JUDGED_IN_TORCH)."""
    from edgekit.int8.torch_side import TorchSearchRequest, fixed_recipe, search_torch_model

    calibration, k = job.calibration, job.options.keep_float
    if k is not None:
        keep, recipe = fixed_recipe(job.deploy, calibration, k, QUANTISER)
        job.progress(f"calibrating int8 activations on {len(calibration)} images (coremltools.optimize.torch)")
        return calibrated_int8(job.deploy, calibration, keep), recipe

    class Recipes:
        no_int16 = NO_INT16_HERE
        quantiser = QUANTISER
        instead = "--precision fp16 (or int8-weights, which keeps fp16 activations)"
        float_ms = None  # the CoreML runtime needs macOS: no speed is measured here

        def quantize(self, model, samples: np.ndarray, keep: tuple[str, ...]) -> nn.Module:
            job.progress(f"int8 search: coremltools' quantiser calibrated on {len(samples)} samples")
            return calibrated_int8(model, samples, keep)

        def run(self, model):
            from edgekit.reference import run_images

            return lambda images: run_images(model, images)

    found = search_torch_model(TorchSearchRequest.of(job), Recipes())
    job.progress(f"int8: {found.recipe.search['chosen']}, calibrated on all {len(calibration)} samples")
    return calibrated_int8(found.model, calibration, found.keep), found.recipe


@contextlib.contextmanager
def _temp_packages_in(folder: Path):
    """coremltools writes every converted model to a tmp*.mlpackage in the system temp folder and
    removes it only at interpreter exit (an atexit hook, which a long-lived process such as a test run
    or a notebook reaches late, and a killed one never): put them in the export's scratch folder,
    which is removed with the export."""
    import tempfile

    before = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = before
