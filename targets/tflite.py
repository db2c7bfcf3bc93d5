"""TFLite: deploy form -> ONNX (opset 17, static) -> onnxsim -> onnx2tf -> .tflite.

onnx2tf writes the float32 and float16 files and a SavedModel; the quantised files are made here
from that SavedModel with TFLiteConverter and edgekit's own calibration data, so every option is
explicit (no Flex/SELECT_TF ops, the I/O types asked for) and nothing is ever downloaded.

Air-gapped: onnx2tf fetches a sample-image .npy from the internet whenever a model has one NHWC
image input, unless a file of that exact name is in the working directory. edgekit writes one made
from its built-in photographs there and runs onnx2tf in that directory.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter (CUDA probes)

import contextlib
import io
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError
from targets.onnx import simplify_onnx

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


# Tolerances the verification holds each precision to (against the PyTorch model it came from).
VERIFY = {
    Precision.FP32: {"max_rel": 1e-4},
    Precision.FP16: {"psnr_db": 40.0},
    Precision.INT8_DYNAMIC: {"psnr_db": 25.0},
    Precision.INT8: {"psnr_db": 25.0},
}


@dataclass(frozen=True)
class TFLiteResult:
    path: Path
    ops: dict[str, int]


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

    write_onnx2tf_sample(workdir, sample_nhwc01)
    out = workdir / "onnx2tf"
    log = io.StringIO()
    with _working_directory(workdir), contextlib.redirect_stdout(log):
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
            raise EdgekitError(f"onnx2tf failed ({e}); rerun with --debug for its log") from e
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


def quantize(saved_model: Path, precision: Precision, calibration_nchw: np.ndarray | None, layout: Layout,
             int8_io: bool) -> bytes:
    """TFLiteConverter on onnx2tf's SavedModel: dynamic-range int8, or int8 with the attention core
    (INT8_FLOAT_OPS) kept float through the converter's selective quantisation; builtins only."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        if precision is not Precision.INT8:
            return converter.convert()
        converter.representative_dataset = _representative(calibration_nchw, layout)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=_representative(calibration_nchw[:1], layout),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(INT8_FLOAT_OPS)),
        )
        model = debugger.get_nondebug_quantized_model()
        if not int8_io:
            return model
        # The selective path ignores inference_input_type; drop the boundary QUANTIZE/DEQUANTIZE instead.
        from tensorflow.lite.python.util import modify_model_io_type

        return modify_model_io_type(model, tf.int8, tf.int8)
    except Exception as e:  # the converter raises ConverterError/RuntimeError with multi-line logs
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgekitError(f"TFLite {precision.value} conversion failed: {first}") from e


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
    int8_io: bool = False,
) -> TFLiteResult:
    """The .tflite for `precision`, written to workdir/model.tflite."""
    simplified = simplify_onnx(onnx_path, workdir / "deploy.sim.onnx")
    out = run_onnx2tf(simplified, workdir, layout, input_name, sample_nhwc01)
    target = workdir / "model.tflite"
    if precision in (Precision.FP32, Precision.FP16):
        suffix = "float32" if precision is Precision.FP32 else "float16"
        produced = out / f"{simplified.stem}_{suffix}.tflite"
        if not produced.is_file():
            raise EdgekitError(f"onnx2tf produced no {suffix} model")
        produced.replace(target)
    else:
        target.write_bytes(quantize(out, precision, calibration_nchw, layout, int8_io))
    ops = tflite_ops(target)
    flex = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if flex:
        raise EdgekitError(f"the TFLite model needs ops outside the builtin set: {', '.join(flex)}")
    return TFLiteResult(target, ops)
