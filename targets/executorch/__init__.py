"""ExecuTorch: PyTorch's own on-device format. The deploy form goes `torch.export` ->
`to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])` -> `.to_executorch()` -> model.pte,
run on the host by `executorch.runtime` (the same C++ runtime an app links, through its Python
bindings) and on phones by ExecuTorch's `executor_runner` (examples/portable/executor_runner).

`int8` is PyTorch's PT2E quantisation with ExecuTorch's XNNPACK quantizer (symmetric, per-channel
weights, int8 activations), calibrated on the calibration set, then lowered the same way; its recipe is
chosen at export time on the weights being exported (edgekit.int8.search: full int8, cross-layer
equalised (exact), the most costly blocks kept float), each recipe lowered and run by ExecuTorch's
own runtime on held-out calibration photos. The manifest records what XNNPACK took (delegate
partitions, the ops inside them) and every op left to ExecuTorch's portable kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.android_harness.harnesses import Harness, RunSettings, TensorIO
from edgekit.int8.recipe import Recipe
from edgekit.int8.search import check_search_calibration, validate_int8_search
from edgekit.targets.base import (
    FP32_EXACT,
    INT8,
    Converted,
    ConvertJob,
    DeployPlan,
    Packaging,
    TargetSpec,
    float_io,
    int8_goal_option,
    keep_float_option,
    search_budget_option,
)
from edgekit.targets.executorch.program import export_program, lower
from edgekit.targets.executorch.taps import _taps

MODEL_FILE = "model.pte"
EXECUTORCH_ANDROID_MAVEN = "org.pytorch:executorch-android"


@dataclass(frozen=True)
class ExecuTorchOptions:
    keep_float: int | None = keep_float_option()
    int8_goal: str = int8_goal_option()
    search_budget: float = search_budget_option()


def _validate(precision: str, options: ExecuTorchOptions) -> None:
    validate_int8_search(precision, options)


class ExecuTorchRunner:
    """executorch.runtime on NCHW float32 images (what the artifact's own program computes), its
    XNNPACK threadpool (one per process) set to `threads`."""

    def __init__(self, path: Path, threads: int = 2):
        from executorch.runtime import Runtime

        from edgekit.logs import quiet_output
        from edgekit.threads import set_executorch_threads

        with quiet_output("executorch"):
            set_executorch_threads(threads)
            self.method = Runtime.get().load_program(str(path)).load_method("forward")
        self._ran = False

    def _execute(self, x: np.ndarray) -> np.ndarray:
        import torch

        return self.method.execute([torch.from_numpy(np.ascontiguousarray(x[None], dtype=np.float32))])[0].numpy()

    def run(self, images: np.ndarray, expected_nchw=None) -> np.ndarray:
        from edgekit.logs import quiet_output

        outs = []
        for x in images:
            if not self._ran:  # the first execution sets up the threadpool, whose cpuinfo lines print
                with quiet_output("executorch"):
                    outs.append(self._execute(x))
                self._ran = True
            else:
                outs.append(self._execute(x))
        return np.concatenate(outs).astype(np.float32)


def _runner(model_file: Path, manifest, threads: int = 2) -> ExecuTorchRunner:
    return ExecuTorchRunner(model_file, threads)


NO_INT16_HERE = ("ExecuTorch's XNNPACK quantizer and kernels take 8-bit activations only "
                 "(w8a16 is the NPU's: --target qnn)")
QUANTISER = {"activations": "int8 per tensor, PT2E min/max observers", "weights": "int8 per channel, symmetric",
             "quantizer": "PT2E, XNNPACKQuantizer (get_symmetric_quantization_config(is_per_channel=True))"}


def _fixed_int8(job: ConvertJob):
    from edgekit.int8.torch_side import fixed_recipe

    keep, recipe = fixed_recipe(job.deploy, job.calibration, job.options.keep_float, QUANTISER)
    return export_program(job.deploy, job.size, job.calibration, keep), recipe


def _search_int8(job: ConvertJob):
    """The recipe search (edgekit.int8.torch_side.search_torch_model) on these weights: each recipe
    PT2E-quantised, lowered to XNNPACK and run by ExecuTorch's runtime (the PT2E graph run in PyTorch
    is another function: 15-20 dB from the .pte, b0-seg 128x256), timed beside the float program;
    one held-out split, not folds, since each lowering takes 20-120 s here."""
    import tempfile

    from edgekit.errors import first_line
    from edgekit.int8.search import RecipeFailed, median_ms
    from edgekit.int8.torch_side import TorchSearchRequest, search_torch_model

    calibration = job.calibration
    scratch = Path(tempfile.mkdtemp(dir=job.work))

    def runner(buffer: bytes) -> ExecuTorchRunner:
        path = scratch / f"trial_{len(list(scratch.iterdir()))}.pte"
        path.write_bytes(buffer)
        return ExecuTorchRunner(path)

    class Recipes:
        no_int16 = NO_INT16_HERE
        quantiser = QUANTISER
        instead = "--precision fp32, or --target qnn --precision w8a16 for the NPU"
        float_ms = None

        def quantize(self, model, samples: np.ndarray, keep: tuple[str, ...]) -> bytes:
            job.progress(f"int8 search: PT2E on {len(samples)} samples, lowering to XNNPACK")
            return lower(export_program(model, job.size, samples, keep))[0]

        def run(self, buffer: bytes):
            trial = runner(buffer)

            def outputs(images: np.ndarray) -> np.ndarray:
                try:
                    return trial.run(images)
                except RuntimeError as e:  # some float/int8 mixes lower but do not execute
                    raise RecipeFailed(f"ExecuTorch's runtime did not run it ({first_line(e)})") from None
            return outputs

    job.progress("int8 search: lowering the float program (the speed reference)")
    float_runner = runner(lower(export_program(job.deploy, job.size))[0])
    recipes = Recipes()
    recipes.float_ms = median_ms(lambda: float_runner.run(calibration[:1]))
    found = search_torch_model(TorchSearchRequest.of(job), recipes)
    job.progress(f"int8: {found.recipe.search['chosen']}, calibrated on all {len(calibration)} samples")
    return export_program(found.model, job.size, calibration, found.keep), found.recipe


def _convert(job: ConvertJob) -> Converted:
    from importlib import metadata

    from edgekit.targets.onnx import io_description

    quantised = job.precision == "int8"
    recipe = None
    if not quantised:
        job.progress("torch.export")
        exported = export_program(job.deploy, job.size)
    elif job.options.keep_float is None:
        exported, recipe = _search_int8(job)
    else:
        job.progress(f"torch.export, PT2E int8 calibrated on {len(job.calibration)} samples")
        exported, recipe = _fixed_int8(job)
    job.progress("lowering to ExecuTorch with the XNNPACK partitioner")
    buffer, ops, delegation = lower(exported)
    model_file = job.out / MODEL_FILE
    model_file.write_bytes(buffer)
    info = {"executorch": metadata.version("executorch"), "delegation": delegation,
            "quantization": "PT2E, XNNPACKQuantizer: int8 symmetric, per-channel weights" if quantised else None}
    if recipe is not None:
        info["int8"] = recipe.to_json()
    return Converted(model_file, ops, io_description(job.size), target_info=info,
                     searched_rewrites=recipe.rewrites if recipe else ())


def _describe(manifest) -> list[str]:

    d = manifest.target_info["delegation"]
    left = ", ".join(f"{n} {op}" for op, n in sorted(d["ops_left_to_portable_kernels"].items())) or "none"
    lines = [f"XNNPACK: {d['ops_in_xnnpack']}/{d['ops_total']} ops in {d['partitions']} partition(s); "
             f"left to portable kernels: {left}"]
    recipe = manifest.target_info.get("int8")
    return lines + (Recipe.from_json(recipe).lines("blocks") if recipe else [])


def _kotlin_runtime(manifest):
    from edgekit.bundle.kotlin import KotlinRuntime

    version = manifest.target_info.get("executorch")
    return KotlinRuntime(
        setup=(f'Gradle: implementation("{EXECUTORCH_ANDROID_MAVEN}:{version}") (the ExecuTorch that wrote this '
               "program; the AAR includes the XNNPACK backend)",
               f"Copy {MODEL_FILE} and the labels into src/main/assets/; Module.load reads a file, so the model is "
               "copied to the app's files folder once"),
        imports=("org.pytorch.executorch.EValue", "org.pytorch.executorch.Module", "org.pytorch.executorch.Tensor",
                 "java.io.File"),
        fields="private val module: Module",
        load="""val file = File(context.filesDir, MODEL_FILE)
if (!file.exists()) context.assets.open(MODEL_FILE).use { src -> file.outputStream().use { src.copyTo(it) } }
module = Module.load(file.absolutePath)""",
        run="""val shape = LongArray(INPUT_SHAPE.size) { INPUT_SHAPE[it].toLong() }
val result = module.forward(EValue.from(Tensor.fromBlob(input.asFloatBuffer(), shape)))[0].toTensor()
check(result.shape().contentEquals(LongArray(OUTPUT_SHAPE.size) { OUTPUT_SHAPE[it].toLong() })) {
    "$MODEL_FILE is not the model this class was generated for"
}
output.asFloatBuffer().put(result.dataAsFloatArray)""",
        close="module.destroy()",
        threads=False,  # XNNPACK's threadpool takes the performant cores itself
    )


def _snippet(spec: dict, manifest) -> tuple[str, str]:
    from edgekit.bundle import kotlin

    return kotlin.FILE_NAME, kotlin.snippet(spec, _kotlin_runtime(manifest))

# ---- on the phone: ExecuTorch's executor_runner ------------------------------------------------------
def _executor_runner_flags(model: str, run: RunSettings, device_dir: str) -> list[str]:
    """ExecuTorch's executor_runner (gflags of examples/portable/executor_runner): the first of the
    warmup + runs executions is the warm-up the parser leaves out."""
    return [f"--model_path={model}", f"--num_executions={run.warmup + run.runs}", f"--cpu_threads={run.threads}"]


def _executor_runner_parse(text: str):
    from edgekit.android_harness import executor_runner_output

    return executor_runner_output.parse(text)


def _executor_runner_io(io: dict, input_file: str, output_base: str) -> list[str]:
    return [f"--inputs={input_file}", f"--output_file={output_base}"]


HARNESS = Harness(
    name="executor_runner",
    binary="executor_runner",
    what="ExecuTorch's executor_runner built for Android arm64 with the XNNPACK backend "
         "(examples/portable/executor_runner, linked with xnnpack_backend)",
    delegates=("cpu",),
    flags=_executor_runner_flags,
    parse=_executor_runner_parse,
    host_module="edgekit.android_harness.host_executor_runner",
    no_op_profile_on_host="no per-op table: executor_runner writes ETDump files, not a table",
    # --inputs (raw bytes per input, comma-separated) and --output_file BASE (BASE-<i>.bin per output)
    tensor_io=TensorIO(_executor_runner_io, lambda base: f"{base}-0.bin",
                       "executorch examples/portable/executor_runner/executor_runner.cpp: --inputs, --output_file"),
)


SPEC = TargetSpec(
    name="executorch",
    summary="ExecuTorch .pte lowered to XNNPACK (Android/iOS CPU): PyTorch's own format, int8 through PT2E",
    model_file=MODEL_FILE,
    precisions=("fp32", "int8"),
    # XNNPACK in ExecuTorch takes 3-D batched matmuls, not the expand of broadcast 4-D ones
    plan=DeployPlan(exact_upsample_passes=("polyphase_upsample",), fp16_compute=(), int8_activations=("int8",),
                    attention_passes=("bmm_attention",), exact_passes=("explicit_tanh_gelu",)),
    convert=_convert,
    tolerances={"fp32": FP32_EXACT, "int8": INT8},
    runner=_runner,
    runner_label="executorch.runtime (XNNPACK)",
    options=ExecuTorchOptions,
    validate=_validate,
    check_calibration=check_search_calibration,
    packaging=Packaging("android", float_io, _snippet),
    harness=HARNESS,
    tools=("executorch", "torchao"),
    describe=_describe,
    taps=_taps,
)
