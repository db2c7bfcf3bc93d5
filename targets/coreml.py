"""CoreML: deploy form -> torch.export -> coremltools mlprogram -> model.mlpackage.

The package takes an RGB image (a CVPixelBuffer in Swift): CoreML's ImageType applies one scalar
scale, so /255 happens there and the per-channel ImageNet mean/std is an exact per-channel affine
op at the start of the converted graph (folding it into the first conv would be wrong at the
zero-padded borders). Classifiers carry their labels (Xcode generates `classLabel`).

CoreML prediction runs only on macOS: on Linux the package is checked structurally (it loads, its
I/O and MIL ops are as expected) and the numbers say "needs macOS", never a pass.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
IOS_TARGETS = (16, 17, 18)
# Linux can only compare the torch model that was converted with the trained one; the package's own
# numbers need macOS.
VERIFY_TORCH = {"psnr_db": 40.0}


class Normalize(nn.Module):
    """(x - mean) / std per channel, on x already in [0, 1]."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("scale", 1.0 / torch.tensor(std).view(1, 3, 1, 1))
        self.register_buffer("shift", -torch.tensor(mean).view(1, 3, 1, 1) / torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.scale + self.shift)


def convert(deploy: nn.Module, size: tuple[int, int], precision: str, ios: int, image_input: bool, mean, std,
            labels: list[str] | None, metadata: dict[str, str]):
    """An MLModel (not yet saved)."""
    import coremltools as ct

    model = Normalize(deploy, mean, std).eval() if image_input else deploy.eval()
    x = torch.rand(1, 3, *size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (x,)).run_decompositions({})
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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgekitError(f"coremltools conversion failed: {first}") from e
    if precision == "int8-weights":
        from coremltools.optimize.coreml import OptimizationConfig, OpLinearQuantizerConfig, linear_quantize_weights

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


def structural_check(path: Path, expected_io: dict) -> dict:
    """What can be verified without macOS: the package loads and declares the I/O it should."""
    import coremltools as ct

    ml = ct.models.MLModel(str(path), skip_model_load=True)
    io = describe_io(ml)
    ok = io["input"] == expected_io["input"] and [o["name"] for o in io["output"]] == [
        o["name"] for o in expected_io["output"]]
    return {"loads": True, "io_matches": ok, "ops": mil_ops(ml)}


def can_predict() -> bool:
    return sys.platform == "darwin"
