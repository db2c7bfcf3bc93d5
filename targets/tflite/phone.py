"""TFLite on a phone: LiteRT's benchmark_model (its real flags and output) and the Android app snippet."""

from __future__ import annotations

from pathlib import Path

from edgekit.android_harness.harnesses import Harness, RunSettings, TensorIO


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
