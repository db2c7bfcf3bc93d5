"""CoreML (iPhone): deploy form -> torch.export -> coremltools mlprogram -> model.mlpackage.

The package takes an RGB image (a CVPixelBuffer in Swift): CoreML's ImageType applies one scalar
scale, so /255 happens there and the per-channel ImageNet mean/std is an exact per-channel affine
op at the start of the converted graph (folding it into the first conv would be wrong at the
zero-padded borders). Classifiers carry their labels (Xcode generates `classLabel`).

CoreML prediction runs only on macOS: on Linux the package is checked structurally (it loads, its
I/O and MIL ops are as expected) and the numbers say "needs macOS", never a pass.

`int8` (weights and activations, iOS 17+) is quantised on the torch side by coremltools'
LinearQuantizer and chooses its recipe at export time (edgekit.int8.torch_side.search_torch_model: full
int8, cross-layer equalised, the most costly residual blocks kept float), each recipe judged in
PyTorch on the quantised model coremltools then converts: the CoreML runtime's own int8 needs macOS,
so neither its numbers nor its speed are measured here, and the record says so.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import EdgekitError, first_line
from edgekit.int8.recipe import Recipe
from edgekit.int8.search import check_search_calibration, validate_int8_search
from edgekit.targets.base import (
    FP16,
    INT8,
    Converted,
    ConvertJob,
    DeployPlan,
    NotRunnable,
    Packaging,
    TargetSpec,
    Tolerance,
    int8_goal_option,
    keep_float_option,
    option,
    search_budget_option,
)

if TYPE_CHECKING:
    import torch.nn as nn

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
IOS_TARGETS = (16, 17, 18)
PRECISIONS = ("fp16", "fp32", "int8-weights", "int8")
# Linux can only compare the torch model that was converted with the trained one; the package's own
# numbers need macOS, where they are held to the same bars.
VERIFY = {"fp16": FP16, "fp32": Tolerance(sqnr_min_db=60.0, pixel_agreement=0.999), "int8-weights": INT8,
          "int8": INT8}
# A weight in the package may differ from the folded torch weight by its storage rounding: none for
# fp32, fp16 rounding for fp16, and for int8 weights half a quantisation step (per output channel)
# plus fp16 roundings counted in steps (|w| <= 127 steps): the weight before quantising (half an
# fp16 ulp, 2**-12 relative), the stored scale and the dequantised value (2**-11 each).
INT8_WEIGHT_STEPS = 0.5 + 127 * (2**-12 + 2 * 2**-11)


@dataclass(frozen=True)
class CoreMLOptions:
    ios: int = option(16, "--ios", "CoreML minimum iOS: 16 | 17 | 18 (int8 activations need 17)", IOS_TARGETS, int)
    input: str = option("image", "--input", "CoreML input: image (CVPixelBuffer) | tensor (normalised float)",
                        ("image", "tensor"))
    keep_float: int | None = keep_float_option()
    int8_goal: str = int8_goal_option()
    search_budget: float = search_budget_option()


NO_INT16_HERE = "coremltools quantises activations to 8 bits only (its 16-bit path is fp16: --precision fp16)"
JUDGED_IN_TORCH = ("each recipe judged in PyTorch on coremltools' quantised model (what it converts to CoreML's "
                   "int8 ops); the CoreML runtime's own int8 runs on macOS/iOS only: its numbers and speed are not "
                   "measured here")
QUANTISER = {"activations": "int8 per tensor, symmetric (coremltools LinearQuantizer)",
             "weights": "int8 per channel, symmetric", "judged_by": JUDGED_IN_TORCH}


def _validate(precision: str, options: CoreMLOptions) -> None:
    validate_int8_search(precision, options)
    if precision == "int8" and options.ios < 17:
        raise EdgekitError("--precision int8 quantises activations, which CoreML runs from iOS 17: add --ios 17")


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
        model_file = job.out / SPEC.model_file
        ml.save(str(model_file))
        return Converted(model_file, mil_ops(ml), describe_io(ml), target_info={"int8": recipe.to_json()} if recipe else {},
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


def _proxy(manifest, reference: nn.Module) -> nn.Module:
    """The torch model an existing package was converted from, rebuilt: the same rewrites (the
    upsample it was exported with) and, for int8, recalibrated on the same calibration source,
    which is deterministic."""
    from edgekit.calibration.sources import calibration_from_record
    from edgekit.deploy import make_deploy_form, upsample_of
    from edgekit.registry import get_variant

    upsample = upsample_of([r["name"] for r in manifest.rewrites])
    calib = calibration_from_record(get_variant(manifest.variant), manifest.size, manifest.calibration)
    deploy = make_deploy_form(reference, manifest.size, SPEC, manifest.precision, upsample,
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


class CoreMLRunner:
    def __init__(self, model_file: Path, manifest):
        from edgekit.labels import class_names
        from edgekit.registry import get_variant

        if not can_predict():
            raise NotRunnable("CoreML prediction needs macOS")
        variant = get_variant(manifest.variant)
        self.path, self.variant = model_file, variant
        self.image_input = manifest.target_options.get("input") == "image"
        self.labels = class_names(variant) if variant.task == "cls" else None

    def run(self, images: np.ndarray, expected_nchw=None) -> np.ndarray:
        v = self.variant
        return predict(self.path, images, v.mean, v.std, self.image_input, self.labels)


def _runner(model_file: Path, manifest, threads: int = 2) -> CoreMLRunner:
    return CoreMLRunner(model_file, manifest)


def _bundle_io(manifest, model_path: Path) -> tuple[dict, dict]:
    io = manifest.io
    inp = {"name": io["input"]["name"], "shape": io["input"]["shape"], "layout": "NCHW",
           "dtype": io["input"]["dtype"], "quantization": None,
           # an image input takes pixels: /255 and mean/std are ops inside the model
           "normalization_inside": manifest.target_options.get("input") == "image"}
    names = [o["name"] for o in io["output"]]
    if manifest.task == "cls":
        out = {"name": names[0], "scores": names[1], "shape": None, "layout": None, "dtype": "string",
               "quantization": None}
    else:
        array = output_arrays(model_path)[names[0]]
        out = {"name": names[0], "shape": array["shape"], "layout": "NCHW", "dtype": array["dtype"],
               "quantization": None}
    return inp, out


def _snippet(spec: dict, manifest) -> tuple[str, str]:
    from edgekit.bundle import swift

    return swift.FILE_NAME, swift.snippet(spec, image_input=manifest.target_options.get("input") == "image")


def _compile_mlmodelc(package: Path, folder: Path) -> str:
    """Xcode's coremlcompiler, on macOS only; elsewhere say why there is none."""
    if sys.platform != "darwin" or shutil.which("xcrun") is None:
        return "not built: compiling to .mlmodelc needs macOS with Xcode (xcrun coremlcompiler); Xcode compiles " \
               "the .mlpackage itself when it is added to an app target"
    done = subprocess.run(["xcrun", "coremlcompiler", "compile", str(package), str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise EdgekitError(f"xcrun coremlcompiler failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return f"{package.stem}.mlmodelc"


def _describe(manifest) -> list[str]:
    recipe = manifest.target_info.get("int8")
    if not recipe:
        return []
    r = Recipe.from_json(recipe)
    return r.lines("blocks", r.quantiser["judged_by"])


def _check_lines(checks: dict) -> list[str]:
    st, w = checks["structure"], checks["weights"]
    casts = ", ".join(st["unexpected_casts"]) or "none"
    return [f"package: loads, I/O as declared: {st['io_matches']}; casts inside the graph: {casts}; "
            f"weights vs folded torch weights: {w['compared']} compared, {w['not_found']} not found, "
            f"max error {w['max_error']:.3g} {w['error_unit']}: {'pass' if w['passed'] else 'FAIL'}"]


SPEC = TargetSpec(
    name="coreml",
    summary="CoreML mlprogram for iPhone (fp16 by default; int8 weights; int8 activations from iOS 17)",
    model_file="model.mlpackage",
    precisions=PRECISIONS,
    # CoreML's int8 models dequantise to fp16 compute: they get the fp16-safe attention too
    plan=DeployPlan(fp16_compute=("fp16", "int8-weights", "int8")),
    convert=_convert,
    tolerances=VERIFY,
    runner=_runner,
    runner_label="CoreML predict (macOS)",
    options=CoreMLOptions,
    validate=_validate,
    check_calibration=check_search_calibration,
    proxy=_proxy,
    checks=_checks,
    describe=_describe,
    check_lines=_check_lines,
    packaging=Packaging("ios", _bundle_io, _snippet, _compile_mlmodelc),
    not_profiled="CoreML runs on an iPhone (Xcode's performance report); edgekit profiles Android phones",
    tools=("coremltools", "torch"),
    quiet_env={"TQDM_DISABLE": "1"},  # coremltools' progress bars
)
