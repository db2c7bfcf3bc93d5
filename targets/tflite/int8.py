"""TFLite int8 from onnx2tf's SavedModel with TFLiteConverter and edgekit's own calibration data:
what stays float and why, calibration once and quantisation from it with any ops kept float, each
op's quantisation cost, and the target's side of the int8 recipe search (edgekit.int8.search).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError, first_line
from edgekit.int8.recipe import CHOSEN_BY_FLAG, CHOSEN_BY_SEARCH, Recipe, equalized_text, ranking_record
from edgekit.targets.base import QuantizationJob
from edgekit.targets.tflite.options import Layout, Precision
from edgekit.targets.tflite.runner import TFLiteRunner
from edgekit.targets.tflite.savedmodel import _sample_nhwc01, run_onnx2tf


def _representative(calibration_nchw: np.ndarray, layout: Layout):
    def gen():
        for x in calibration_nchw:
            sample = x[None] if layout is Layout.NCHW else x.transpose(1, 2, 0)[None]
            yield [np.ascontiguousarray(sample, dtype=np.float32)]

    return gen


# What stays float in an `int8` model (docs/int8.md, "What TFLite int8 keeps float", has the figures):
# the attention core, whose normaliser and token sums one per-tensor int8 scale cannot carry;
INT8_ATTENTION_FLOAT_OPS = ("BATCH_MATMUL", "DIV", "SUM", "MAXIMUM", "SOFTMAX")
# ops XNNPACK has no int8 kernel for, which would otherwise cut the graph into CPU-reference islands;
INT8_XNNPACK_FLOAT_OPS = ("HARD_SWISH", "RELU", "RSQRT", "SQUARED_DIFFERENCE", "SUB")
INT8_FLOAT_OPS = INT8_ATTENTION_FLOAT_OPS + INT8_XNNPACK_FLOAT_OPS
# and LayerNorm by node name (onnx2tf names its ops layer_normalization/...), costly on one photo at a time.
INT8_FLOAT_NODES = ("layer_normalization",)
SENSITIVITY_SAMPLES = 4  # calibration samples (the original photos come first) the ranking is measured on




def _converter(saved_model: Path, calibration_nchw: np.ndarray | None, layout: Layout):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if calibration_nchw is not None:
        converter.representative_dataset = _representative(calibration_nchw, layout)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _conversion_failed(precision: str, e: Exception) -> EdgekitError:
    # the converter raises ConverterError/RuntimeError with multi-line logs
    return EdgekitError(f"TFLite {precision} conversion failed: {first_line(e)}", log=str(e))


def calibrate(saved_model: Path, calibration_nchw: np.ndarray, layout: Layout) -> bytes:
    """The float model with each tensor's calibrated min/max (TFLiteConverter's calibration step,
    the one QuantizationDebugger uses): quantised from it with any set of ops kept float, without
    calibrating again."""
    converter = _converter(saved_model, calibration_nchw, layout)
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001 - the public debugger does the same
    try:
        return converter.convert()
    except Exception as e:
        raise _conversion_failed("int8 calibration", e) from e


def quantize_calibrated(calibrated: bytes, keep_float: tuple[str, ...] = ()) -> bytes:
    """Full int8 from a calibrated model: INT8_FLOAT_OPS, the INT8_FLOAT_NODES and the nodes named in
    `keep_float` (op output tensor names) stay float, everything else int8 with per-tensor activations."""
    from tensorflow.lite.python import convert as tf_convert

    structural = [n["node"] for n in _nodes(calibrated) if any(p in n["node"] for p in INT8_FLOAT_NODES)]
    try:
        return tf_convert.mlir_quantize(calibrated, denylisted_ops=list(INT8_FLOAT_OPS),
                                        denylisted_nodes=[*structural, *keep_float])
    except Exception as e:
        raise _conversion_failed("int8", e) from e


def quantizable_nodes(calibrated: bytes) -> list[dict]:
    """The ops a full-int8 model quantises, in graph order: op type, output tensor name and shape."""
    return [n for n in _nodes(calibrated) if not any(p in n["node"] for p in INT8_FLOAT_NODES)]


def _nodes(calibrated: bytes) -> list[dict]:
    """Every op not kept float by type (INT8_FLOAT_OPS), with its output tensor name and shape."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=calibrated)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    nodes = []
    for op in interp._get_ops_details():  # noqa: SLF001 - no public API
        if op["op_name"] in INT8_FLOAT_OPS or op["op_name"] in ("QUANTIZE", "DEQUANTIZE") or not op["outputs"]:
            continue
        out = tensors[op["outputs"][0]]
        nodes.append({"node": out["name"], "op": op["op_name"], "index": int(op["index"]),
                      "shape": [int(d) for d in out["shape"]]})
    return nodes


def sensitivity(calibrated: bytes, images_nchw: np.ndarray, task: str, progress=lambda _m: None,
                stop=lambda: False) -> list[dict] | None:
    """Each quantisable op int8 alone (everything else float), most costly first (by its worst image:
    an op that is harmless on most photos can still ruin one): the SQNR of the model's output against
    the calibrated float model itself on `images_nchw`, so the number is the cost of that op's
    quantisation and nothing else. None if `stop()` turns true on the way (a search out of time)."""
    from edgekit.metrics import compare

    reference = TFLiteRunner(content=calibrated).run(images_nchw)  # in the model's own layout: SQNR only
    nodes = quantizable_nodes(calibrated)
    names = [n["node"] for n in nodes]
    found = []
    for i, node in enumerate(nodes, 1):
        if stop():
            return None
        progress(f"int8 sensitivity: op {i}/{len(nodes)} ({node['op']})")
        alone = quantize_calibrated(calibrated, tuple(n for n in names if n != node["node"]))
        result = compare(reference, TFLiteRunner(content=alone).run(images_nchw, reference.shape), task)
        found.append({**node, "sqnr_db": result["sqnr_db_median"], "sqnr_db_min": result["sqnr_db_min"]})
    return sorted(found, key=lambda n: (n["sqnr_db_min"], n["sqnr_db"]))


@dataclass(frozen=True)
class Int8Request:
    """What an int8 conversion is asked for: a fixed number of ops kept float (--keep-float), or
    (keep_float None) a recipe search against `goal` within `budget_s`; `originals`: how many distinct
    images the calibration samples came from (the search holds some out)."""

    keep_float: int | None = 0
    goal: object = None  # edgekit.int8.search.Goal
    budget_s: float = 900.0
    originals: int = 0
    int8_io: bool = False
    task: str = "seg"
    judge: object = None  # edgekit.int8.search.TaskJudge: the labelled set's metric is the goal instead
    # the search's equalisation recipe: a callable making the SavedModel of the deploy form with the
    # exact FFN equalisation, or why there is none (a str)
    equalized: object = "not offered"


QUANTISER = {"activations": "int8 per tensor, calibrated min/max", "weights": "int8 per channel",
             "float_ops": list(INT8_FLOAT_OPS), "float_nodes": list(INT8_FLOAT_NODES)}


def _recipe(keep_float: int, kept: list[dict], ranked: list[dict] | None, measured_on: str, chosen_by: str,
            **search) -> Recipe:
    return Recipe(keep_float, kept, chosen_by, QUANTISER, ranking_record(ranked, measured_on), **search,
                  ranking_key="sensitivity")


def _fixed_int8(saved_model: Path, calibration_nchw: np.ndarray, layout: Layout, request: Int8Request,
                progress) -> tuple[bytes, Recipe]:
    calibrated = calibrate(saved_model, calibration_nchw, layout)
    kept, ranked = [], None
    photos = calibration_nchw[:SENSITIVITY_SAMPLES]
    if request.keep_float:
        ranked = sensitivity(calibrated, photos, request.task, progress)
        kept = ranked[:request.keep_float]
    model = quantize_calibrated(calibrated, tuple(n["node"] for n in kept))
    return model, _recipe(request.keep_float, kept, ranked, f"the first {len(photos)} calibration samples",
                          CHOSEN_BY_FLAG)


# 16-bit activations: TFLite's int16x8 mode exists, but XNNPACK (the CPU runtime this target ships and
# is timed with) has only 8-bit quantised kernels, so such a model would leave XNNPACK: not a fast recipe here.
# what to ship when no int8 recipe is faithful and faster than the float graph here
INSTEAD = "--precision fp16 (XNNPACK's fp16 kernels on ARM, the GPU delegate), or --target qnn --precision w8a16 for the NPU"
NO_INT16_HERE = "XNNPACK, this target's CPU runtime, has no 16-bit activation kernels (w8a16 is the NPU's: --target qnn)"


@dataclass
class _Base:
    """One float graph the search quantises: calibrated on all samples, and once per fold."""

    calibrated: bytes
    per_fold: list[bytes]


class _Recipes:
    """The TFLite side of the recipe search (edgekit.int8.search.Recipes): each recipe quantised from
    the float graph calibrated once per fold, judged on the samples of the images the fold held out
    against the float graph, timed beside it; with a labelled set, also the model calibrated on all
    samples, scored by the task metric."""

    unit = "ops"
    no_int16 = NO_INT16_HERE

    def __init__(self, saved_model: Path, calibration: np.ndarray, layout: Layout, request: Int8Request, progress):
        from edgekit.int8.search import folds

        self.calibration, self.layout, self.request, self.progress = calibration, layout, request, progress
        self.splits = folds(len(calibration), request.originals)
        progress(f"int8 search: calibrating on all {len(calibration)} samples, then {len(self.splits)} times "
                 f"without the images each fold judges")
        self.bases = {False: self._calibrated(saved_model)}
        self.float_runner = TFLiteRunner(content=self.bases[False].calibrated)
        self.reference = self.float_runner.run(calibration)  # the float graph: calibration does not change it
        self.equalization = request.equalized if isinstance(request.equalized, str) else None
        self.float_metric = None
        if request.judge is not None:
            progress(f"int8 search: scoring the float graph on the {request.judge.goal.images} labelled images")
            self.float_metric = request.judge.score(self.float_runner.run).value()
        self.search = None  # set by search_int8: rank() stops when it runs out of time

    def _calibrated(self, saved_model: Path) -> _Base:
        return _Base(calibrate(saved_model, self.calibration, self.layout),
                     [calibrate(saved_model, self.calibration[fit], self.layout) for fit, _ in self.splits])

    def float_ms(self) -> float:
        from edgekit.int8.search import median_ms

        return median_ms(lambda: self.float_runner.run(self.calibration[:1], self.reference.shape))

    def prepare_equalized(self) -> None:
        self.progress("int8 search: converting the deploy form cross-layer equalised")
        self.bases[True] = self._calibrated(self.request.equalized())

    def build(self, equalized: bool, keep: tuple[str, ...]) -> tuple[list[bytes], bytes | None]:
        base = self.bases[equalized]
        return ([quantize_calibrated(c, keep) for c in base.per_fold],
                None if self.request.judge is None else quantize_calibrated(base.calibrated, keep))

    def measure(self, built: tuple[list[bytes], bytes | None]) -> dict:
        from edgekit.int8.search import median_ms, task_fields
        from edgekit.metrics import compare

        models, whole = built
        outputs = np.empty_like(self.reference)
        for model, (_, judged) in zip(models, self.splits, strict=True):
            outputs[judged] = TFLiteRunner(content=model).run(self.calibration[judged], self.reference.shape)
        c = compare(self.reference, outputs, self.request.task)
        timed = TFLiteRunner(content=models[0])
        m = {k: c[k] for k in ("sqnr_db_median", "sqnr_db_min", "agreement", "agreement_min", "agreement_kind")}
        m["median_ms"] = median_ms(lambda: timed.run(self.calibration[:1], self.reference.shape))
        judge = self.request.judge
        return m | (task_fields(judge, TFLiteRunner(content=whole).run, self.float_metric) if judge else {})

    def rank(self, equalized: bool) -> list[dict] | None:
        self.progress("int8 search: ranking the ops by the cost of their quantisation")
        return sensitivity(self.bases[equalized].calibrated, self.calibration[:SENSITIVITY_SAMPLES], self.request.task,
                           self.progress, stop=self.search.out_of_time)


def search_int8(saved_model: Path, calibration_nchw: np.ndarray, layout: Layout, request: Int8Request,
                progress) -> tuple[bytes, Recipe]:
    """The recipe search (edgekit.int8.search.run_recipes) on these weights, each recipe judged by
    leave-images-out cross-validation over the calibration images against the float graph, or with a
    labelled set by its task metric; the artifact is the chosen recipe calibrated on all the samples."""
    from edgekit.int8.search import Search, judged_on, run_recipes

    recipes = _Recipes(saved_model, calibration_nchw, layout, request, progress)
    judge = request.judge
    recipes.search = search = Search(request.goal if judge is None else judge.goal, request.budget_s,
                                     recipes.measure, recipes.float_ms(), progress, request.goal.min_speedup)
    chosen, equalized, order = run_recipes(search, recipes)
    k = chosen["options"]["keep_float"]
    kept = [] if order is None else order[:k]
    model = quantize_calibrated(recipes.bases[equalized].calibrated, tuple(n["node"] for n in kept))
    n, splits = len(calibration_nchw), recipes.splits
    folds_text = (f"all {n} calibration samples of {request.originals} images, "
                  f"{len(splits)}-fold: each judged by a model calibrated without its image")
    record = search.record(
        chosen, INSTEAD, judged_on=judged_on(judge, folds_text),
        reference="the float graph without equalisation (the calibrated model)",
        calibrated_on=[len(fit) for fit, _ in splits],
        artifact=f"the chosen recipe calibrated on all {n} samples (its verification on the verification "
        f"photos follows)")
    # the ranking only orders the ops (on the model calibrated on all images); the folds judge which k is enough
    return model, _recipe(k, kept, order, f"the first {min(n, SENSITIVITY_SAMPLES)} calibration samples (the photos "
                          f"themselves), on the model calibrated on all of them", CHOSEN_BY_SEARCH,
                          equalized=equalized_text(n) if equalized else None, search=record)


def quantize(saved_model: Path, precision: Precision, calibration_nchw: np.ndarray | None, layout: Layout,
             request: Int8Request = Int8Request(), progress=lambda _m: None) -> tuple[bytes, Recipe | None]:
    """TFLiteConverter on onnx2tf's SavedModel: dynamic-range int8; or full int8 with the attention
    core and XNNPACK-less ops (INT8_FLOAT_OPS) float and, with keep_float > 0, also the ops whose
    quantisation costs the most on the calibration photos (never the verification ones), or with
    keep_float None the recipe the search chose. Returns the model and what the recipe did, for the manifest."""
    if precision is not Precision.INT8:
        try:
            return _converter(saved_model, None, layout).convert(), None
        except Exception as e:
            raise _conversion_failed(precision.value, e) from e
    if request.keep_float is None:
        model, recipe = search_int8(saved_model, calibration_nchw, layout, request, progress)
    else:
        model, recipe = _fixed_int8(saved_model, calibration_nchw, layout, request, progress)
    if request.int8_io:
        # The selective path ignores inference_input_type; drop the boundary QUANTIZE/DEQUANTIZE instead.
        import tensorflow as tf
        from tensorflow.lite.python.util import modify_model_io_type

        model = modify_model_io_type(model, tf.int8, tf.int8)
    return model, recipe


ANALYSIS_KEEP_FLOAT = (10, 30, 60)  # what keeping the most costly ops float buys, measured in the analysis


def _quantization(job: QuantizationJob) -> dict:
    """The int8 sensitivity of every quantised op on held-out photos, the full-int8 cost, and what
    keeping the most costly ops float buys (each measured, not added up)."""
    from edgekit.metrics import compare
    from edgekit.targets.onnx import INPUT_NAME, export_onnx, simplify_onnx

    job.progress("exporting the int8 deploy form (ONNX, onnx2tf)")
    onnx_path = simplify_onnx(export_onnx(job.deploy, job.size, job.work / "deploy.onnx"), job.work / "deploy.sim.onnx")
    saved = run_onnx2tf(onnx_path, job.work, Layout.NHWC, INPUT_NAME, _sample_nhwc01(job.variant.dataset, job.size))
    job.progress(f"calibrating on {len(job.calibration)} samples")
    calibrated = calibrate(saved, job.calibration, Layout.NHWC)
    ranked = sensitivity(calibrated, job.images, job.variant.task, job.progress)
    reference = TFLiteRunner(content=calibrated).run(job.images)
    points = []
    for keep in (0, *(k for k in ANALYSIS_KEEP_FLOAT if k < len(ranked))):
        job.progress(f"int8 with the {keep} most costly ops float")
        model = quantize_calibrated(calibrated, tuple(n["node"] for n in ranked[:keep]))
        c = compare(reference, TFLiteRunner(content=model).run(job.images), job.variant.task)
        points.append({"keep_float": keep, "sqnr_db_median": c["sqnr_db_median"], "sqnr_db_min": c["sqnr_db_min"]})
    return {"reference": "the same graph in float (the calibrated model), so only quantisation is measured",
            "images": list(job.image_names), "ops": ranked, "keep_float": points,
            "float_ops": [*INT8_FLOAT_OPS, *(f"{n}/*" for n in INT8_FLOAT_NODES)]}
