"""TFLite (Android CPU/GPU): deploy form -> ONNX (opset 17, static) -> onnxsim -> onnx2tf -> .tflite,
run on the host by ai-edge-litert (XNNPACK), on phones by LiteRT's benchmark_model.

onnx2tf writes the float32 and float16 files and a SavedModel; the quantised files are made here
from that SavedModel with TFLiteConverter and edgekit's own calibration data, so every option is
explicit (no Flex/SELECT_TF ops, the I/O types asked for) and nothing is ever downloaded.

Air-gapped: onnx2tf fetches a sample-image .npy from the internet whenever a model has one NHWC
image input, unless a file of that exact name is in the working directory. edgekit writes one made
from its built-in photographs there and runs onnx2tf in that directory.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np

from edgekit.android_harness.harnesses import Harness, RunSettings, TensorIO
from edgekit.errors import EdgekitError, first_line
from edgekit.int8_search import EQUALIZED, searched_rewrites
from edgekit.targets.base import (
    FP16,
    FP32_EXACT,
    INT8,
    Converted,
    ConvertJob,
    DeployPlan,
    Packaging,
    QuantizationJob,
    TargetSpec,
    bias_correction_option,
    check_search_calibration,
    int8_goal_option,
    keep_float_option,
    option,
    search_budget_option,
    validate_int8_search,
)

ONNX2TF_SAMPLE_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"
ONNX2TF_SAMPLE_SHAPE = (20, 128, 128, 3)


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"
    INT8 = "int8"


class Layout(str, Enum):
    NHWC = "nhwc"
    NCHW = "nchw"


# What verification holds each precision to, against the PyTorch model, on held-out photos.
# fp32: PyTorch's own rounding (verify raises max_rel to twice PyTorch-fp32's distance from float64
# where that is larger); fp16 and int8: SQNR on every photo and, for segmentation, pixel classes kept.
VERIFY = {
    Precision.FP32.value: FP32_EXACT,
    Precision.FP16.value: FP16,
    Precision.INT8_DYNAMIC.value: INT8,
    Precision.INT8.value: INT8,
}


@dataclass(frozen=True)
class TFLiteOptions:
    layout: str = option("nhwc", "--layout", "input layout: nhwc (camera order) | nchw", ("nhwc", "nchw"))
    io: str = option("float", "--io", "input/output type: float | int8 (needs --precision int8)", ("float", "int8"))
    keep_float: int | None = keep_float_option()
    int8_goal: str = int8_goal_option()
    search_budget: float = search_budget_option()
    equalize: str = option("off", "--equalize", "int8: cross-layer equalisation before calibration, on every conv "
                           "pair a scale passes exactly (nothing or a ReLU between) | off",
                           ("off", "on"))
    bias_correction: str = bias_correction_option("off")


def _search_settings(options: TFLiteOptions):
    from edgekit.int8_search import parse_goal

    return parse_goal(options.int8_goal), options.search_budget


def _validate(precision: str, options: TFLiteOptions) -> None:
    if options.io == "int8" and precision != Precision.INT8.value:
        raise EdgekitError("--io int8 needs --precision int8 (integer inputs exist only in a full-integer model)")
    validate_int8_search(precision, options)
    if options.equalize == "on" and precision != Precision.INT8.value:
        raise EdgekitError("--equalize needs --precision int8 (it balances ranges for int8 activations)")
    if options.bias_correction == "on" and precision != Precision.INT8.value:
        raise EdgekitError("--bias-correction on needs --precision int8 (it corrects for int8 weights)")
    if options.bias_correction == "on" and options.keep_float is None:
        raise EdgekitError("--bias-correction on needs --keep-float N: the int8 recipe search judges against the "
                           "float graph, which bias correction shifts on purpose")


@dataclass(frozen=True)
class TFLiteResult:
    path: Path
    ops: dict[str, int]
    recipe: dict


@contextlib.contextmanager
def _working_directory(path: Path):
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def write_onnx2tf_sample(path: Path, images_nhwc01: np.ndarray) -> Path:
    """The file onnx2tf would otherwise download: 20 RGB images 128x128 in [0, 1], NHWC float32."""
    import tensorflow as tf

    reps = -(-ONNX2TF_SAMPLE_SHAPE[0] // len(images_nhwc01))
    batch = np.concatenate([images_nhwc01] * reps)[: ONNX2TF_SAMPLE_SHAPE[0]]
    sample = tf.image.resize(batch, ONNX2TF_SAMPLE_SHAPE[1:3]).numpy().astype(np.float32)
    np.save(path / ONNX2TF_SAMPLE_NAME, np.clip(sample, 0.0, 1.0))
    return path / ONNX2TF_SAMPLE_NAME


def run_onnx2tf(onnx_path: Path, workdir: Path, layout: Layout, input_name: str, sample_nhwc01: np.ndarray) -> Path:
    """onnx2tf in `workdir` (with the local sample file); returns its output folder."""
    import onnx2tf

    from edgekit.logs import captured

    write_onnx2tf_sample(workdir, sample_nhwc01)
    out = workdir / "onnx2tf"
    log = io.StringIO()
    with _working_directory(workdir), contextlib.redirect_stdout(log), captured("onnx2tf", log):
        try:
            onnx2tf.convert(
                input_onnx_file_path=str(onnx_path),
                output_folder_path=str(out),
                copy_onnx_input_output_names_to_tflite=True,
                output_signaturedefs=True,
                not_use_onnxsim=True,  # edgekit has simplified it already
                non_verbose=True,
                # Strict mode stays on: without it onnx2tf mis-converts the Microsoft models (6 dB
                # PSNR on m0-cls). It crashes on scalar Mul constants, so the deploy form has none.
                disable_strict_mode=False,
                keep_ncw_or_nchw_or_ncdhw_input_names=[input_name] if layout is Layout.NCHW else None,
            )
        except SystemExit as e:  # onnx2tf reports some failures by exiting
            raise EdgekitError(f"onnx2tf failed ({e}); rerun with --debug for its log", log=log.getvalue()) from e
        except Exception as e:
            raise EdgekitError(f"onnx2tf failed: {first_line(e)}; rerun with --debug for its log", log=log.getvalue()) from e
    return out


def _representative(calibration_nchw: np.ndarray, layout: Layout):
    def gen():
        for x in calibration_nchw:
            sample = x[None] if layout is Layout.NCHW else x.transpose(1, 2, 0)[None]
            yield [np.ascontiguousarray(sample, dtype=np.float32)]

    return gen


# Ops that stay float in an `int8` model.
# - The attention core. Quantised, the LiteMLA normaliser's divisor hits its zero point (TFLite's
#   int8 DIV then aborts) and the sums over all tokens lose everything to one per-tensor scale
#   (measured here: ~10^4 quantisation steps of error at each DIV, 4 dB PSNR end to end on b0-seg);
#   the softmax attention of the Microsoft models likewise.
# - Ops XNNPACK has no int8 kernel for: each one quantised fell back to the CPU reference kernels
#   and cut the graph (b0-seg int8: 25 HARD_SWISH + 8 RELU outside, 33 partitions, 3x slower than
#   fp32; b1-cls also its LayerNorm's RSQRT/SQUARED_DIFFERENCE/SUB). Kept float, they run in XNNPACK
#   between QUANTIZE/DEQUANTIZE, and the graph is one partition (benchmarks/delegate_coverage.py).
INT8_ATTENTION_FLOAT_OPS = ("BATCH_MATMUL", "DIV", "SUM", "MAXIMUM", "SOFTMAX")
INT8_XNNPACK_FLOAT_OPS = ("HARD_SWISH", "RELU", "RSQRT", "SQUARED_DIFFERENCE", "SUB")
INT8_FLOAT_OPS = INT8_ATTENTION_FLOAT_OPS + INT8_XNNPACK_FLOAT_OPS
# Nodes kept float by name: LayerNorm (onnx2tf names its ops layer_normalization/...). Its MUL outputs
# cost the MIT classifiers 18.7 dB SQNR on a held-out photo when quantised alone (b0-cls; the median
# over the photos was 36-58 dB, so a ranking by median, or on the calibration photos, never shows it).
INT8_FLOAT_NODES = ("layer_normalization",)
SENSITIVITY_SAMPLES = 4  # calibration samples (the original photos come first) the ranking is measured on
SENSITIVITY_RECORDED = 20  # the most costly ops listed in the manifest


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
    goal: object = None  # edgekit.int8_search.Goal
    budget_s: float = 900.0
    originals: int = 0
    int8_io: bool = False
    task: str = "seg"
    judge: object = None  # edgekit.int8_search.TaskJudge: the labelled set's metric is the goal instead
    # the search's equalisation recipe: a callable making the SavedModel of the deploy form with the
    # exact FFN equalisation, or why there is none (a str)
    equalized: object = "not offered"


def _recipe(keep_float: int, kept: list[dict], ranked: list[dict] | None, measured_on: str) -> dict:
    return {"activations": "int8 per tensor, calibrated min/max", "weights": "int8 per channel",
            "float_ops": list(INT8_FLOAT_OPS), "float_nodes": list(INT8_FLOAT_NODES), "keep_float": keep_float,
            "kept_float": kept,
            "sensitivity": None if ranked is None else {"measured_on": measured_on,
                                                        "most_costly": ranked[:SENSITIVITY_RECORDED]}}


def _fixed_int8(saved_model: Path, calibration_nchw: np.ndarray, layout: Layout, request: Int8Request,
                progress) -> tuple[bytes, dict]:
    calibrated = calibrate(saved_model, calibration_nchw, layout)
    kept, ranked = [], None
    photos = calibration_nchw[:SENSITIVITY_SAMPLES]
    if request.keep_float:
        ranked = sensitivity(calibrated, photos, request.task, progress)
        kept = ranked[:request.keep_float]
    model = quantize_calibrated(calibrated, tuple(n["node"] for n in kept))
    return model, {**_recipe(request.keep_float, kept, ranked, f"the first {len(photos)} calibration samples"),
                   "chosen_by": "--keep-float"}


# 16-bit activations: TFLite's int16x8 mode exists, but XNNPACK (the CPU runtime this target ships and
# is timed with) has only 8-bit quantised kernels, so such a model would leave XNNPACK: not a fast recipe here.
NO_INT16_HERE = "XNNPACK, this target's CPU runtime, has no 16-bit activation kernels (w8a16 is the NPU's: --target qnn)"




@dataclass
class _Base:
    """One float graph the search quantises: calibrated on all samples, and once per fold."""

    calibrated: bytes
    per_fold: list[bytes]


def _calibrated_base(saved_model: Path, calibration_nchw: np.ndarray, layout: Layout, splits) -> _Base:
    return _Base(calibrate(saved_model, calibration_nchw, layout),
                 [calibrate(saved_model, calibration_nchw[fit], layout) for fit, _ in splits])


def search_int8(saved_model: Path, calibration_nchw: np.ndarray, layout: Layout, request: Int8Request,
                progress) -> tuple[bytes, dict]:
    """The recipe search (edgekit.int8_search) on these weights: full int8; the same on the deploy form
    cross-layer equalised (exact; where the graph allows a pair); then, on whichever of the two
    did better, the fewest most-costly ops kept float (bisection on the sensitivity ranking). Each recipe
    is judged by leave-images-out cross-validation over the calibration images (int8_search.folds)
    against the float graph, or with a labelled set by its task metric; the artifact is the chosen
    recipe calibrated on all the samples."""
    from edgekit.int8_search import (
        Search,
        equalized_text,
        folds,
        judged_on,
        median_ms,
        run_recipes,
        task_fields,
    )
    from edgekit.metrics import compare

    splits = folds(len(calibration_nchw), request.originals)
    progress(f"int8 search: calibrating on all {len(calibration_nchw)} samples, then {len(splits)} times "
             f"without the images each fold judges")
    plain = _calibrated_base(saved_model, calibration_nchw, layout, splits)
    float_runner = TFLiteRunner(content=plain.calibrated)
    reference = float_runner.run(calibration_nchw)  # the float graph: calibration ranges do not change it

    judge = request.judge  # with a labelled set: its metric, of the model calibrated on all samples
    if judge is not None:
        progress(f"int8 search: scoring the float graph on the {judge.goal.images} labelled images")
        float_metric = judge.score(float_runner.run).value()

    def build(base: _Base, keep: tuple[str, ...]) -> tuple[list[bytes], bytes | None]:
        return ([quantize_calibrated(c, keep) for c in base.per_fold],
                None if judge is None else quantize_calibrated(base.calibrated, keep))

    def measure(built: tuple[list[bytes], bytes | None]) -> dict:
        models, whole = built
        outputs = np.empty_like(reference)
        for model, (_, judged) in zip(models, splits, strict=True):
            outputs[judged] = TFLiteRunner(content=model).run(calibration_nchw[judged], reference.shape)
        c = compare(reference, outputs, request.task)
        timed = TFLiteRunner(content=models[0])
        ms = median_ms(lambda: timed.run(calibration_nchw[:1], reference.shape))
        m = {k: c[k] for k in ("sqnr_db_median", "sqnr_db_min", "agreement", "agreement_min",
                               "agreement_kind")} | {"median_ms": ms}
        return m | (task_fields(judge, TFLiteRunner(content=whole).run, float_metric) if judge else {})

    search = Search(request.goal if judge is None else judge.goal, request.budget_s, measure,
                    median_ms(lambda: float_runner.run(calibration_nchw[:1], reference.shape)), progress)
    bases = {"": plain}

    def prepare_equalized() -> None:
        progress("int8 search: converting the deploy form cross-layer equalised")
        bases[EQUALIZED] = _calibrated_base(request.equalized(), calibration_nchw, layout, splits)

    def rank(prefix: str) -> list[dict] | None:
        progress("int8 search: ranking the ops by the cost of their quantisation")
        return sensitivity(bases[prefix].calibrated, calibration_nchw[:SENSITIVITY_SAMPLES], request.task, progress,
                           stop=search.out_of_time)

    chosen, prefix, order = run_recipes(
        search, lambda prefix, keep: build(bases[prefix], keep),
        request.equalized if isinstance(request.equalized, str) else prepare_equalized, rank, "ops", NO_INT16_HERE)
    k = chosen["options"]["keep_float"]
    kept = [] if order is None else order[:k]
    model = quantize_calibrated(bases[prefix].calibrated, tuple(n["node"] for n in kept))
    # the ranking only orders the ops (measured on the model calibrated on all images); which k is
    # enough is judged by the folds
    recipe = _recipe(k, kept, order, f"the first {min(len(calibration_nchw), SENSITIVITY_SAMPLES)} calibration "
                     f"samples (the photos themselves), on the model calibrated on all of them")
    recipe["chosen_by"] = "the recipe search"
    recipe["equalized"] = equalized_text(len(calibration_nchw)) if prefix else None
    folds_text = (f"all {len(calibration_nchw)} calibration samples of {request.originals} images, "
                  f"{len(splits)}-fold: each judged by a model calibrated without its image")
    recipe["search"] = search.record(
        chosen, judged_on=judged_on(judge, folds_text),
        reference="the float graph without equalisation (the calibrated model)",
        calibrated_on=[len(fit) for fit, _ in splits],
        artifact=f"the chosen recipe calibrated on all {len(calibration_nchw)} samples (its verification "
        f"on the verification photos follows)")
    return model, recipe


def quantize(saved_model: Path, precision: Precision, calibration_nchw: np.ndarray | None, layout: Layout,
             request: Int8Request = Int8Request(), progress=lambda _m: None) -> tuple[bytes, dict]:
    """TFLiteConverter on onnx2tf's SavedModel: dynamic-range int8; or full int8 with the attention
    core and XNNPACK-less ops (INT8_FLOAT_OPS) float and, with keep_float > 0, also the ops whose
    quantisation costs the most on the calibration photos (never the verification ones), or with
    keep_float None the recipe the search chose. Returns the model and what the recipe did, for the manifest."""
    if precision is not Precision.INT8:
        try:
            return _converter(saved_model, None, layout).convert(), {}
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
    recipe: dict = {}
    if precision not in (Precision.FP32, Precision.FP16):
        model, recipe = quantize(out, precision, calibration_nchw, layout, request, progress)
        target.write_bytes(model)
    ops = tflite_ops(target)
    flex = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if flex:
        raise EdgekitError(f"the TFLite model needs ops outside the builtin set: {', '.join(flex)}")
    return TFLiteResult(target, ops, recipe)


class TFLiteRunner:
    """ai-edge-litert (XNNPACK) on NCHW float32 images: layout transposes and int8 I/O
    (de)quantisation happen here, from the model's own tensor details."""

    def __init__(self, path: Path | None = None, threads: int = 2, content: bytes | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=None if path is None else str(path), model_content=content,
                                       num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_nhwc(self) -> bool:
        shape = self.input["shape"]
        return len(shape) == 4 and shape[-1] == 3 and shape[1] != 3

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = x.transpose(0, 2, 3, 1) if self.input_nhwc else x
        scale, zero = self.input["quantization"]
        if self.input["dtype"] in (np.int8, np.uint8):
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        return np.ascontiguousarray(x, dtype=self.input["dtype"])

    def _finish(self, y: np.ndarray, expected_nchw: tuple[int, ...] | None) -> np.ndarray:
        scale, zero = self.output["quantization"]
        y = (y.astype(np.float32) - zero) * scale if self.output["dtype"] in (np.int8, np.uint8) else y
        if y.ndim == 4 and expected_nchw is not None and y.shape[1:] != tuple(expected_nchw[1:]):
            y = y.transpose(0, 3, 1, 2)  # onnx2tf emits NHWC feature maps
        return y.astype(np.float32)

    def run(self, images: np.ndarray, expected_nchw: tuple[int, ...] | None = None) -> np.ndarray:
        outs = []
        for img in images:
            self.interpreter.set_tensor(self.input["index"], self._prepare(img[None]))
            self.interpreter.invoke()
            outs.append(self._finish(self.interpreter.get_tensor(self.output["index"]), expected_nchw))
        return np.concatenate(outs)


def _layout(shape, classes: int) -> str:
    if len(shape) != 4:
        return "NC"
    return "NHWC" if shape[-1] == classes else "NCHW"


def io_description(path: Path, classes: int) -> dict:
    """The model file's real input and output tensors (names, shapes, layouts, types, int8 params)."""
    r = TFLiteRunner(path)
    inp, out = r.input, r.output

    def quant(d):
        scale, zero = d["quantization"]
        return {"scale": float(scale), "zero_point": int(zero)} if d["dtype"] in (np.int8, np.uint8) else None

    return {
        "input": {"name": inp["name"], "shape": [int(s) for s in inp["shape"]],
                  "layout": "NHWC" if r.input_nhwc else "NCHW", "dtype": np.dtype(inp["dtype"]).name,
                  "quantization": quant(inp)},
        "output": {"name": out["name"], "shape": [int(s) for s in out["shape"]], "layout": _layout(out["shape"], classes),
                   "dtype": np.dtype(out["dtype"]).name, "quantization": quant(out)},
    }


def _sample_nhwc01(dataset: str, size) -> np.ndarray:
    """onnx2tf's sample images, from the calibration photos (never the verification ones)."""
    from edgekit.calibration.images import calibration_images, load_rgb
    from PIL import Image

    images = [load_rgb(p) for p in calibration_images(dataset)]
    return np.stack([np.asarray(im.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32) / 255
                     for im in images])


_OP_LINE = re.compile(r"^\s*Op#(\d+) (\w+)\(")
_GPU_WARNING = "GPU COMPATIBILITY WARNING: "


def gpu_compatibility(model_file: Path) -> dict:
    """Whether LiteRT's GPU delegate takes every node, checked offline by LiteRT's own model analyzer
    (the C++ ModelAnalyzer that tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)
    prints; ai-edge-litert ships the same wrapper, without TensorFlow's 20 s import)."""
    try:
        from ai_edge_litert import _pywrap_analyzer_wrapper as analyzer
    except ImportError:  # an ai-edge-litert without it: TensorFlow's copy of the same wrapper
        from tensorflow.lite.python import _pywrap_analyzer_wrapper as analyzer
    return parse_gpu_analysis(analyzer.ModelAnalyzer(str(model_file), True, True))


GPU_ANALYZER_CAVEAT = ("LiteRT's analyzer checks op support only, and in the ai-edge-litert 2.x and TensorFlow 2.21 "
                       "wheels it also passed a model of BUCKETIZE, TOPK_V2 and GATHER_ND (measured here): take a "
                       "pass as a hint, and verify on the phone (verify --device PHONE --delegate gpu)")


def parse_gpu_analysis(text: str) -> dict:
    """The analyzer's report (tflite/tools/model_analyzer.cc): "GPU COMPATIBILITY WARNING: why" under
    each node the delegate refuses, a per-subgraph summary line, or "Your model looks compatible with
    GPU delegate"; refused nodes fall back to the CPU on the phone."""
    refused, node = [], None
    for line in text.splitlines():
        op = _OP_LINE.match(line)
        if op:
            node = (int(op[1]), op[2])
        elif line.startswith(_GPU_WARNING) and node is not None and "has GPU delegate compatibility issues" not in line:
            refused.append({"node": node[0], "op": node[1], "why": line[len(_GPU_WARNING):].strip()})
            node = None
    compatible = "looks compatible with GPU delegate" in text and not refused
    version = re.search(r"GPU delegate (?:on|with) TFLite runtime version (\S+?)\.?$", text, re.M)
    return {"checked_by": "LiteRT ModelAnalyzer (gpu_compatibility=True)", "compatible": compatible,
            "runtime_version": version[1] if version else None, "refused": refused, "note": GPU_ANALYZER_CAVEAT}


def _equalized_graph(job: ConvertJob):
    """The int8 search's equalisation recipe: a callable converting the deploy form with the exact
    cross-layer equalisation (deploy pass cross_layer_equalization) to a SavedModel, or why it is not offered."""
    from edgekit.torch_int8 import equalized_form

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
    model_file = job.out / SPEC.model_file
    shutil.move(str(result.path), model_file)
    info = {"int8": result.recipe} if result.recipe else {}
    job.progress("checking GPU delegate compatibility (LiteRT's model analyzer)")
    info["gpu_delegate"] = gpu_compatibility(model_file)
    return Converted(model_file, result.ops, io_description(model_file, job.variant.num_classes), target_info=info,
                     searched_rewrites=searched_rewrites(result.recipe))


ANALYSIS_KEEP_FLOAT = (10, 30, 60)  # what keeping the most costly ops float buys, measured in the analysis


def _quantization(job: QuantizationJob) -> dict:
    """The int8 sensitivity of every quantised op on held-out photos, the full-int8 cost, and what
    keeping the most costly ops float buys (each measured, not added up)."""
    from edgekit.targets.onnx import INPUT_NAME, export_onnx, simplify_onnx

    from edgekit.metrics import compare

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


def _describe(manifest) -> list[str]:
    lines = []
    gpu = manifest.target_info.get("gpu_delegate")
    if gpu:
        if gpu["compatible"]:
            lines.append("GPU delegate: LiteRT's analyzer finds every node supported (a hint, not a proof: verify "
                         "on a phone with --delegate gpu)")
        else:
            ops = sorted({r["op"] for r in gpu["refused"]})
            lines.append(f"GPU delegate: {len(gpu['refused'])} node(s) would fall back to the CPU ({', '.join(ops)}): "
                         f"{gpu['refused'][0]['why'] if gpu['refused'] else 'see the analyzer'}")
    recipe = manifest.target_info.get("int8")
    if not recipe:
        return lines
    from edgekit.int8_search import summary_lines

    n = recipe["keep_float"]
    kept = f"the {n} ops whose quantisation cost most on the calibration photos kept float" if n else "full int8"
    lines.append(f"int8: {kept} ({recipe.get('chosen_by') or recipe.get('keep_float_chosen_by', '--keep-float')}); "
                 f"attention core, {', '.join(recipe['float_nodes'])} and XNNPACK-less ops float")
    if recipe.get("equalized"):
        lines.append(f"int8: {recipe['equalized']}")
    return lines + (summary_lines(recipe["search"]) if recipe.get("search") else [])


def _runner(model_file: Path, manifest, threads: int = 2) -> TFLiteRunner:
    return TFLiteRunner(model_file, threads)


def _bundle_io(manifest, model_path: Path) -> tuple[dict, dict]:
    io = manifest.io
    keys = ("name", "shape", "layout", "dtype", "quantization")
    return {k: io["input"][k] for k in keys}, {k: io["output"][k] for k in keys}


LITERT_MAVEN = "com.google.ai.edge.litert:litert:1.4.1"  # the Interpreter API line (minSdk 21)


def _kotlin_runtime():
    from edgekit.bundle.kotlin import KotlinRuntime

    return KotlinRuntime(
        setup=(f'Gradle: implementation("{LITERT_MAVEN}")',
               "Copy the model and labels into src/main/assets/ and keep the model uncompressed",
               'so it can be memory-mapped: android { androidResources { noCompress += "tflite" } }'),
        imports=("org.tensorflow.lite.Interpreter", "java.io.FileInputStream", "java.nio.channels.FileChannel"),
        fields="private val interpreter: Interpreter",
        load="""val fd = context.assets.openFd(MODEL_FILE)
val model = FileInputStream(fd.fileDescriptor).channel
    .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
interpreter = Interpreter(model, Interpreter.Options().setNumThreads(numThreads))
val inputTensor = interpreter.getInputTensor(0)
val outputTensor = interpreter.getOutputTensor(0)
check(inputTensor.name() == INPUT_NAME && inputTensor.shape().contentEquals(INPUT_SHAPE) &&
    outputTensor.name() == OUTPUT_NAME && outputTensor.shape().contentEquals(OUTPUT_SHAPE)) {
    "$MODEL_FILE is not the model this class was generated for"
}""",
        run="interpreter.run(input, output)",
        close="interpreter.close()",
    )


def _snippet(spec: dict, manifest) -> tuple[str, str]:
    from edgekit.bundle import kotlin

    return kotlin.FILE_NAME, kotlin.snippet(spec, _kotlin_runtime())


# ---- on the phone: LiteRT's benchmark_model -----------------------------------------------------------
def _benchmark_model_flags(model: str, run: RunSettings, device_dir: str) -> list[str]:
    flags = [f"--graph={model}", f"--num_threads={run.threads}", f"--num_runs={run.runs}",
             f"--warmup_runs={run.warmup}"]
    flags += {"cpu": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"], "nnapi": ["--use_nnapi=true"],
              # LiteRT's QNN delegate for TFLite models, pushed by the user (not the qnn target)
              "qnn-tflite": [f"--external_delegate_path={device_dir}/libQnnTFLiteDelegate.so"]}[run.delegate]
    if run.op_profile:
        flags.append("--enable_op_profiling=true")
    return flags


def _benchmark_model_parse(text: str):
    from edgekit.android_harness import benchmark_output

    return benchmark_output.parse(text)


def _benchmark_model_io(io: dict, input_file: str, output_path: str) -> list[str]:
    """--input_layer/--input_layer_shape name the input (value files must name a listed layer), a ':'
    in a name escaped as '::'; --output_filepath gets every output's raw bytes after the last run."""
    inp = io["input"]
    name = inp["name"].replace(":", "::")
    return [f"--input_layer={inp['name']}", "--input_layer_shape=" + ",".join(str(d) for d in inp["shape"]),
            f"--input_layer_value_files={name}:{input_file}", f"--output_filepath={output_path}"]


HARNESS = Harness(
    name="benchmark_model",
    binary="benchmark_model",
    what="LiteRT's benchmark_model for Android arm64",
    delegates=("cpu", "gpu", "nnapi", "qnn-tflite"),
    flags=_benchmark_model_flags,
    parse=_benchmark_model_parse,
    host_module="edgekit.android_harness.host_benchmark",
    no_op_profile_on_host="no per-op table: the host harness has no profiler (ai-edge-litert exposes none)",
    tensor_io=TensorIO(_benchmark_model_io, lambda path: path,
                       "LiteRT tflite/tools/benchmark/benchmark_tflite_model.cc: --input_layer, --input_layer_shape, "
                       "--input_layer_value_files, --output_filepath"),
    # the GPU delegate's default (gpu_precision_loss_allowed) runs an fp32 model in fp16
    fp16_delegates=("gpu",),
)


# TensorFlow's C++ INFO/WARNING lines, its oneDNN notice (conversion only), gRPC's, onnx2tf's progress bars
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "GRPC_VERBOSITY": "ERROR", "TQDM_DISABLE": "1"}


def _option_passes(options: TFLiteOptions, precision: str) -> tuple[str, ...]:
    if precision != "int8":
        return ()
    return tuple(name for name, flag in (("cross_layer_equalization", "equalize"), ("bias_correction", "bias_correction"))
                 if getattr(options, flag, "off") == "on")


SPEC = TargetSpec(
    name="tflite",
    summary="TFLite for Android CPU (XNNPACK) and GPU: fp32, fp16, int8 with float or int8 I/O",
    model_file="model.tflite",
    precisions=tuple(p.value for p in Precision),
    # XNNPACK has no RESIZE_NEAREST_NEIGHBOR: the exact upsample's nearest steps become depth-to-space
    plan=DeployPlan(exact_upsample_passes=("nearest_depth_to_space",)),
    convert=_convert,
    tolerances=VERIFY,
    runner=_runner,
    runner_label="ai-edge-litert (XNNPACK)",
    options=TFLiteOptions,
    validate=_validate,
    check_calibration=check_search_calibration,
    packaging=Packaging("android", _bundle_io, _snippet),
    harness=HARNESS,
    quiet_env=QUIET_ENV,
    tools=("onnx", "onnxsim", "onnx2tf", "tensorflow", "ai-edge-litert"),
    quantization=_quantization,
    describe=_describe,
    option_passes=_option_passes,
)
