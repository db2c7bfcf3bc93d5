"""CoreML: deploy form -> torch.export -> coremltools mlprogram -> model.mlpackage.

The package takes an RGB image (a CVPixelBuffer in Swift): CoreML's ImageType applies one scalar
scale, so /255 happens there and the per-channel ImageNet mean/std is an exact per-channel affine
op at the start of the converted graph (folding it into the first conv would be wrong at the
zero-padded borders). Classifiers carry their labels (Xcode generates `classLabel`).

CoreML prediction runs only on macOS: on Linux the package is checked structurally (it loads, its
I/O and MIL ops are as expected) and the numbers say "needs macOS", never a pass.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgekit.errors import EdgekitError

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
IOS_TARGETS = (16, 17, 18)
# Linux can only compare the torch model that was converted with the trained one; the package's own
# numbers need macOS. int8 is held to the TFLite int8 bar.
VERIFY_TORCH = {"psnr_db": 40.0}
VERIFY_TORCH_INT8 = {"psnr_db": 25.0}
# A weight in the package may differ from the folded torch weight by its storage rounding: none for
# fp32, fp16 rounding for fp16, and for int8 weights half a quantisation step (per output channel)
# plus fp16 roundings counted in steps (|w| <= 127 steps): the weight before quantising (half an
# fp16 ulp, 2**-12 relative), the stored scale and the dequantised value (2**-11 each).
INT8_WEIGHT_STEPS = 0.5 + 127 * (2**-12 + 2 * 2**-11)


def verify_torch(precision: str) -> dict:
    return VERIFY_TORCH_INT8 if precision == "int8" else VERIFY_TORCH


class Normalize(nn.Module):
    """(x - mean) / std per channel, on x already in [0, 1]."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("scale", 1.0 / torch.tensor(std).view(1, 3, 1, 1))
        self.register_buffer("shift", -torch.tensor(mean).view(1, 3, 1, 1) / torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.scale + self.shift)


def calibrated_int8(deploy: nn.Module, calibration: np.ndarray) -> nn.Module:
    """Weights and activations int8 on the torch side (coremltools.optimize.torch), calibrated on
    `calibration` (N, 3, H, W) normalised images: observers only, no training, then finalised into
    quantize/dequantize pairs that coremltools turns into CoreML int8 ops (iOS 17+)."""
    from coremltools.optimize.torch.quantization import (
        LinearQuantizer,
        LinearQuantizerConfig,
        ModuleLinearQuantizerConfig,
    )

    steps = len(calibration)
    # milestones: observers on from step 0; fake quantisation and observer freezing only after the
    # calibration batches; BN is already folded.
    config = LinearQuantizerConfig(global_config=ModuleLinearQuantizerConfig(
        quantization_scheme="symmetric", milestones=[0, steps, steps, 0]))
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

    model = Normalize(deploy, mean, std).eval() if image_input else deploy.eval()
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


def output_arrays(path: Path) -> dict[str, dict]:
    """Shape and element type of each multi-array output of a saved package (read from its spec)."""
    import coremltools as ct

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    types = {v: k.lower() for k, v in ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.items()}
    return {o.name: {"shape": [int(s) for s in o.type.multiArrayType.shape],
                     "dtype": types[o.type.multiArrayType.dataType]}
            for o in spec.description.output if o.type.WhichOneof("Type") == "multiArrayType"}


def _weight_key(name: str) -> str:
    """A MIL weight name or a torch state-dict key, reduced to what both share: torch.export names a
    parameter p_<path with _>, coremltools appends _to_fp16 or _cast_fp16 (TorchScript) and
    _quantized."""
    name = re.sub(r"^(p_|b_)", "", name.replace(".", "_"))
    return re.sub(r"(_to_fp16|_cast_fp16)?(_quantized)?$", "", name)


def package_weights(path: Path) -> dict[str, np.ndarray]:
    """The weight tensors (rank >= 2) stored in an mlpackage, dequantised, by _weight_key."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    ml = ct.models.MLModel(str(path), skip_model_load=True)
    spec = ml.get_spec()
    program = load(spec, spec.specificationVersion, file_weights_dir=ml.weights_dir)
    found = {}
    for function in program.functions.values():
        for op in function.operations:
            if op.op_type == "const":
                value = op.outputs[0].val
            elif op.op_type.startswith("constexpr_"):
                value = op.materialized_val_inference()
            else:
                continue
            # a quantised model also keeps the raw integers under *_quantized_data_N
            if isinstance(value, np.ndarray) and value.ndim >= 2 and not re.search(r"_quantized_data_\d+$", op.name):
                found[_weight_key(op.name)] = value
    return found


def check_weights(path: Path, converted: nn.Module, precision: str, prefix: str = "") -> dict:
    """Every rank >= 2 tensor of the converted torch model (folded convs, linears, attention biases)
    against the package: equal after fp16 rounding (fp16), exactly (fp32), or within half an int8
    step of its output channel (int8-weights). Tensors coremltools merged into another op are
    counted as not found, not as a pass. `prefix`: "model." when the package wraps the model in
    Normalize (image input)."""
    stored = package_weights(path)
    compared, worst, missing, failed = 0, 0.0, [], []
    for name, tensor in converted.state_dict().items():
        if not isinstance(tensor, torch.Tensor) or tensor.ndim < 2 or not tensor.is_floating_point():
            continue
        key = _weight_key(prefix + name)
        if key not in stored:
            missing.append(name)
            continue
        want = tensor.detach().float().numpy()
        got = stored[key].astype(np.float32)
        if got.shape != want.shape:
            failed.append(name)
            continue
        compared += 1
        if precision.startswith("int8"):
            step = np.abs(want).reshape(len(want), -1).max(axis=1) / 127
            err = np.abs(got - want).reshape(len(want), -1).max(axis=1) / np.maximum(step, 1e-12)
            error = float(err.max())
            ok = error <= INT8_WEIGHT_STEPS
        else:
            rounded = want.astype(np.float16).astype(np.float32) if precision == "fp16" else want
            error = float(np.abs(got - rounded).max())
            ok = error == 0.0
        worst = max(worst, error)
        if not ok:
            failed.append(name)
    unit = "int8 steps" if precision.startswith("int8") else "absolute"
    return {"compared": compared, "not_found": len(missing), "mismatched": failed[:5],
            "max_error": worst, "error_unit": unit, "passed": compared > 0 and not failed}


def unexpected_casts(ml) -> list[str]:
    """Casts other than the input's (image -> fp16) and the output's (-> fp32): a cast inside the
    graph means part of an fp16 model silently computes in fp32 (or the reverse)."""
    main = ml.get_spec().mlProgram.functions["main"]
    block = main.block_specializations[main.opset]
    inputs = tuple(i.name for i in main.inputs)
    consumers: dict[str, list[str]] = {}
    for op in block.operations:
        for arg in op.inputs.values():
            for a in arg.arguments:
                if a.name:
                    consumers.setdefault(a.name, []).append(op.type)
    found = []
    for op in block.operations:
        if op.type != "cast":
            continue
        source = op.inputs["x"].arguments[0].name
        out = op.outputs[0].name
        at_input = source.startswith(inputs)
        at_output = out in block.outputs or all(c == "classify" for c in consumers.get(out, ["?"]))
        if not (at_input or at_output):
            found.append(out)
    return found


def structural_check(path: Path, expected_io: dict) -> dict:
    """What can be verified without macOS: the package loads, declares the I/O it should, and has
    no casts inside the graph."""
    import coremltools as ct

    ml = ct.models.MLModel(str(path), skip_model_load=True)
    io = describe_io(ml)
    ok = io["input"] == expected_io["input"] and [o["name"] for o in io["output"]] == [
        o["name"] for o in expected_io["output"]]
    return {"loads": True, "io_matches": ok, "unexpected_casts": unexpected_casts(ml), "ops": mil_ops(ml)}


def can_predict() -> bool:
    return sys.platform == "darwin"


def predict(path: Path, images: np.ndarray, mean, std, image_input: bool, labels: list[str] | None) -> np.ndarray:
    """The package's own outputs on normalised (N, 3, H, W) images: CoreML prediction, macOS only
    (written against coremltools' documented API; no Mac runs it in edgekit's CI).
    Image inputs get the 8-bit RGB pictures the normalised images came from; a classifier's
    per-label scores come back in label order."""
    import coremltools as ct
    from PIL import Image

    ml = ct.models.MLModel(str(path))
    description = ml.get_spec().description
    name = description.predictedProbabilitiesName or description.output[0].name
    outs = []
    for x in images:
        if image_input:
            rgb = (x * np.array(std).reshape(3, 1, 1) + np.array(mean).reshape(3, 1, 1)) * 255
            feed = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0))
        else:
            feed = x[None].astype(np.float32)
        out = ml.predict({INPUT_NAME: feed})[name]
        outs.append(np.array([out[label] for label in labels])[None] if isinstance(out, dict) else out)
    return np.concatenate(outs).astype(np.float32)
