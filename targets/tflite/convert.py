"""The TFLite conversion: deploy form -> ONNX (opset 17, static) -> onnxsim -> onnx2tf -> .tflite
(float32 and float16 as onnx2tf writes them; the quantised precisions from its SavedModel, in int8.py),
checked to use builtin ops only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.int8.recipe import Recipe
from edgekit.targets.base import Converted, ConvertJob
from edgekit.targets.tflite.int8 import Int8Request, quantize
from edgekit.targets.tflite.options import Layout, Precision, _search_settings
from edgekit.targets.tflite.runner import gpu_compatibility, io_description
from edgekit.targets.tflite.savedmodel import _sample_nhwc01, run_onnx2tf

MODEL_FILE = "model.tflite"


@dataclass(frozen=True)
class TFLiteResult:
    path: Path
    ops: dict[str, int]
    recipe: Recipe | None  # int8's


def tflite_ops(path: Path) -> dict[str, int]:
    """Op histogram of a .tflite file (builtin names; custom/Flex ops by their custom code)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    counts = Counter(d["op_name"] for d in interp._get_ops_details())  # noqa: SLF001 - no public API
    return dict(sorted(counts.items()))


def convert(
    onnx_path: Path,
    workdir: Path,
    precision: Precision,
    layout: Layout,
    input_name: str,
    sample_nhwc01: np.ndarray,
    calibration_nchw: np.ndarray | None = None,
    request: Int8Request = Int8Request(),
    progress=lambda _m: None,
) -> TFLiteResult:
    """The .tflite for `precision`, written to workdir/model.tflite."""
    from edgekit.targets.onnx import simplify_onnx

    simplified = simplify_onnx(onnx_path, workdir / "deploy.sim.onnx")
    out = run_onnx2tf(simplified, workdir, layout, input_name, sample_nhwc01)
    target = workdir / "model.tflite"
    if precision in (Precision.FP32, Precision.FP16):
        suffix = "float32" if precision is Precision.FP32 else "float16"
        produced = out / f"{simplified.stem}_{suffix}.tflite"
        if not produced.is_file():
            raise EdgekitError(f"onnx2tf produced no {suffix} model")
        produced.replace(target)
    recipe = None
    if precision not in (Precision.FP32, Precision.FP16):
        model, recipe = quantize(out, precision, calibration_nchw, layout, request, progress)
        model, renamed = _io_names_of(model, out / f"{simplified.stem}_float32.tflite")
        target.write_bytes(model)
        recipe = recipe.renamed(renamed) if recipe else None
    ops = tflite_ops(target)
    flex = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if flex:
        raise EdgekitError(f"the TFLite model needs ops outside the builtin set: {', '.join(flex)}")
    return TFLiteResult(target, ops, recipe)


def _io_names_of(model: bytes, like: Path) -> tuple[bytes, dict[str, str]]:
    """`model` with its input and output tensors named as in `like`, onnx2tf's float model, and the
    renames (old name -> new): the converter names a quantised model's I/O after its SavedModel
    signature (serving_default_image:0), and app code that names the input must not break when the
    precision changes."""
    from tensorflow.lite.tools import flatbuffer_utils

    ours, theirs = flatbuffer_utils.read_model_from_bytearray(bytearray(model)), flatbuffer_utils.read_model(str(like))
    renamed: dict[str, str] = {}
    for mine, reference in ((ours.subgraphs[0].inputs, theirs.subgraphs[0].inputs),
                            (ours.subgraphs[0].outputs, theirs.subgraphs[0].outputs)):
        for i, j in zip(mine, reference, strict=True):
            old, new = ours.subgraphs[0].tensors[i].name, theirs.subgraphs[0].tensors[j].name
            renamed[old.decode()] = new.decode()
            ours.subgraphs[0].tensors[i].name = new
    return bytes(flatbuffer_utils.convert_object_to_bytearray(ours)), renamed


def _equalized_graph(job: ConvertJob):
    """The int8 search's equalisation recipe: a callable converting the deploy form with the exact
    cross-layer equalisation (deploy pass cross_layer_equalization) to a SavedModel, or why it is not offered."""
    from edgekit.int8.torch_side import equalized_form

    if job.options.equalize == "on":
        return "applied to the deploy form before the search (--equalize on)"
    equalize = equalized_form(job.deploy, job.size)
    if isinstance(equalize, str):
        return equalize

    def convert_equalized() -> Path:
        from edgekit.targets.onnx import INPUT_NAME, export_onnx, simplify_onnx

        model = equalize(job.calibration)
        work = job.work / "equalized"
        work.mkdir()
        onnx_path = simplify_onnx(export_onnx(model, job.size, work / "deploy.onnx"), work / "deploy.sim.onnx")
        return run_onnx2tf(onnx_path, work, Layout(job.options.layout), INPUT_NAME,
                           _sample_nhwc01(job.variant.dataset, job.size))

    return convert_equalized


def _convert(job: ConvertJob) -> Converted:
    import shutil

    from edgekit.targets.onnx import INPUT_NAME, export_onnx

    job.progress("exporting the deploy form to ONNX")
    onnx_path = export_onnx(job.deploy, job.size, job.work / "deploy.onnx")
    calibrating = job.calibration is not None
    request = Int8Request(job.options.keep_float, *_search_settings(job.options), job.calibration_originals,
                          job.options.io == "int8", job.variant.task, job.task_judge) \
        if job.precision == Precision.INT8.value else None
    if request is not None and request.keep_float is None:
        request = replace(request, equalized=_equalized_graph(job))
    job.progress(f"converting to TFLite {job.precision} (onnxsim, onnx2tf{', int8 calibration' if calibrating else ''})")
    result = convert(onnx_path, job.work, Precision(job.precision), Layout(job.options.layout), INPUT_NAME,
                     _sample_nhwc01(job.variant.dataset, job.size), job.calibration, request or Int8Request(),
                     progress=job.progress)
    model_file = job.out / MODEL_FILE
    shutil.move(str(result.path), model_file)
    recipe = result.recipe
    if recipe is not None and recipe.kept_float:  # which layers those are, in PyTorch's names
        from edgekit.targets.tflite.taps import tensor_modules

        recipe = recipe.with_modules(tensor_modules(model_file, job.work / "deploy.sim.onnx",
                                                    {n for n, _ in job.deploy.named_modules()}))
    info = {"int8": recipe.to_json()} if recipe else {}
    job.progress("checking GPU delegate compatibility (LiteRT's model analyzer)")
    info["gpu_delegate"] = gpu_compatibility(model_file)
    return Converted(model_file, result.ops, io_description(model_file, job.variant.num_classes), target_info=info,
                     searched_rewrites=recipe.rewrites if recipe else ())
