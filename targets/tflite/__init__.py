"""TFLite (Android CPU/GPU): deploy form -> ONNX (opset 17, static) -> onnxsim -> onnx2tf -> .tflite,
run on the host by ai-edge-litert (XNNPACK), on phones by LiteRT's benchmark_model.

onnx2tf writes the float32 and float16 files and a SavedModel; the quantised files are made from that
SavedModel with TFLiteConverter and edgekit's own calibration data, so every option is explicit (no
Flex/SELECT_TF ops, the I/O types asked for) and nothing is ever downloaded.

The package, one job per file: `options` (precisions, layouts, flags and their checks), `savedmodel`
(onnx2tf, offline), `convert` (the conversion export runs), `int8` (calibration, quantisation,
per-op sensitivity, the target's side of the recipe search), `runner` (the host runner and the GPU
analyzer), `phone` (benchmark_model and the Android snippet); this file is the table entry.
"""

from __future__ import annotations

from edgekit.int8.recipe import Recipe
from edgekit.int8.search import check_search_calibration
from edgekit.targets.base import DeployPlan, Packaging, TargetSpec
from edgekit.targets.tflite.convert import MODEL_FILE, _convert
from edgekit.targets.tflite.int8 import _quantization
from edgekit.targets.tflite.options import VERIFY, Precision, TFLiteOptions, _option_passes, _validate
from edgekit.targets.tflite.phone import HARNESS, _bundle_io, _snippet
from edgekit.targets.tflite.runner import _runner
from edgekit.targets.tflite.taps import _taps


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
    r = Recipe.from_json(recipe)
    return lines + r.lines("ops", f"attention core, {', '.join(r.quantiser['float_nodes'])} and XNNPACK-less ops "
                                  "float")


# TensorFlow's C++ INFO/WARNING lines, its oneDNN notice (conversion only), gRPC's, onnx2tf's progress bars
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "GRPC_VERBOSITY": "ERROR", "TQDM_DISABLE": "1"}


SPEC = TargetSpec(
    name="tflite",
    summary="TFLite for Android CPU (XNNPACK) and GPU: fp32, fp16, int8 with float or int8 I/O",
    model_file=MODEL_FILE,
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
    taps=_taps,
)
