"""What is checked of a CoreML package off macOS: its structure, its I/O, its ops and every weight
against the converted torch model, which stands in for its numbers (the proxy)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.targets.coreml.convert import calibrated_int8, describe_io, mil_ops

if TYPE_CHECKING:
    import torch.nn as nn


# A weight in the package may differ from the folded torch weight by its storage rounding: none for
# fp32, fp16 rounding for fp16, and for int8 weights half a quantisation step (per output channel)
# plus fp16 roundings counted in steps (|w| <= 127 steps): the weight before quantising (half an
# fp16 ulp, 2**-12 relative), the stored scale and the dequantised value (2**-11 each).
INT8_WEIGHT_STEPS = 0.5 + 127 * (2**-12 + 2 * 2**-11)


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
    import torch

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


def _proxy(manifest, reference: nn.Module) -> nn.Module:
    """The torch model an existing package was converted from, rebuilt: the same rewrites (the
    upsample it was exported with) and, for int8, recalibrated on the same calibration source,
    which is deterministic."""
    from edgekit.calibration.sources import calibration_from_record
    from edgekit.deploy import make_deploy_form, upsample_of
    from edgekit.registry import get_variant

    upsample = upsample_of([r["name"] for r in manifest.rewrites])
    calib = calibration_from_record(get_variant(manifest.variant), manifest.size, manifest.calibration)
    deploy = make_deploy_form(reference, manifest.size, manifest.spec, manifest.precision, upsample,
                              calibration=calib.data if calib is not None else None).model
    if manifest.precision != "int8":
        return deploy
    recipe = manifest.target_info.get("int8") or {}  # the recipe the export chose (none: before the search)
    if recipe.get("equalized"):
        from edgekit.deploy.equalization import cross_layer_equalization

        deploy = cross_layer_equalization(deploy, manifest.size, calibration=calib.data)
    return calibrated_int8(deploy, calib.data, tuple(n["node"] for n in recipe.get("kept_float", [])))


def _checks(model_file: Path, manifest, converted: nn.Module, images=None, expected=None) -> dict:
    """What Linux can check of the package itself: it loads, declares its I/O, has no casts inside
    the graph, and stores every weight of the converted torch model."""
    structure = structural_check(model_file, manifest.io)
    image_input = manifest.target_options.get("input") == "image"
    weights = check_weights(model_file, converted, manifest.precision, prefix="model." if image_input else "")
    passed = bool(structure["io_matches"] and not structure["unexpected_casts"] and weights["passed"])
    return {"structure": structure, "weights": weights, "passed": passed}


def _check_lines(checks: dict) -> list[str]:
    st, w = checks["structure"], checks["weights"]
    casts = ", ".join(st["unexpected_casts"]) or "none"
    return [f"package: loads, I/O as declared: {st['io_matches']}; casts inside the graph: {casts}; "
            f"weights vs folded torch weights: {w['compared']} compared, {w['not_found']} not found, "
            f"max error {w['max_error']:.3g} {w['error_unit']}: {'pass' if w['passed'] else 'FAIL'}"]
