"""ONNX: the deploy form exported with static shapes (opset 17), simplified with onnxsim, run on the
host by ONNX Runtime. Also the first step of the TFLite target and the source of the QNN target.

ONNX keeps the trained bicubic upsample by default (ONNX Resize has a cubic mode matching torch);
`--upsample exact` gives the same deploy form as TFLite's, the fair peer for speed comparisons.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.android_harness.harnesses import Harness, RunSettings
from edgekit.errors import EdgekitError
from edgekit.registry import Size
from edgekit.targets.base import (
    FP32_EXACT,
    Converted,
    ConvertJob,
    DeployPlan,
    Packaging,
    TargetSpec,
    Upsample,
    float_io,
)

if TYPE_CHECKING:
    import numpy as np
    import torch.nn as nn

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, resolution: Size, path: str | Path, batch: int = 1) -> Path:
    """Trace `model` at a fixed input shape into an ONNX file (TorchScript exporter, constant folding)."""
    import torch

    path = Path(path)
    x = torch.zeros(batch, 3, *resolution)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer chatter about constants: static shapes are the point
        torch.onnx.export(
            model.eval(),
            (x,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
        )
    return path


def simplify_onnx(src: Path, dst: Path) -> Path:
    """onnxsim's constant folding and cleanup, validated by onnxsim itself."""
    import onnx
    import onnxsim

    model, ok = onnxsim.simplify(onnx.load(str(src)))
    if not ok:
        raise EdgekitError("onnxsim could not validate the simplified graph")
    onnx.save(model, str(dst))
    return dst


def load_graph(path: str | Path):
    import onnx

    return onnx.shape_inference.infer_shapes(onnx.load(str(path)))


def op_histogram(model_proto) -> dict[str, int]:
    """Compute ops by type (Constant/Identity are graph plumbing, left out)."""
    counts = Counter(n.op_type for n in model_proto.graph.node if n.op_type not in ("Constant", "Identity"))
    return dict(sorted(counts.items()))


def max_tensor_rank(model_proto) -> int:
    g = model_proto.graph
    infos = [*g.value_info, *g.input, *g.output]
    return max(len(v.type.tensor_type.shape.dim) for v in infos)


def io_description(size: Size) -> dict:
    return {"input": {"name": INPUT_NAME, "shape": [1, 3, *size], "layout": "NCHW", "dtype": "float32",
                      "quantization": None},
            "output": {"name": OUTPUT_NAME, "layout": "NCHW", "dtype": "float32", "quantization": None}}


class ONNXRunner:
    """ONNX Runtime on NCHW float32 images. `session` may be given ready-made (the QNN target builds
    its own with the QNN execution provider)."""

    def __init__(self, path: Path, threads: int = 2, session=None):
        if session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.log_severity_level = 3  # errors only: its warnings go to stderr
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def run(self, images: np.ndarray, expected_nchw: tuple[int, ...] | None = None) -> np.ndarray:
        import numpy as np

        outs = [self.session.run(None, {self.input_name: np.ascontiguousarray(img[None])})[0] for img in images]
        return np.concatenate(outs).astype(np.float32)


def _runner(model_file: Path, manifest, threads: int = 2) -> ONNXRunner:
    return ONNXRunner(model_file, threads)


def with_outputs(src: Path, tensors: list[str], dst: Path) -> list[str]:
    """A copy of the graph at `src` with `tensors` (those it has) added as graph outputs, written to
    `dst`; returns the ones added, in graph order. The graph computes the same; a compiler (QNN's) may
    fuse it differently."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(src)))
    graph = model.graph
    info = {v.name: v for v in graph.value_info}
    wanted = set(tensors)
    present = {o.name for o in graph.output}
    found = [o for n in graph.node for o in n.output if o in wanted and (o in present or o in info)]
    graph.output.extend(info[o] for o in found if o not in present)
    onnx.save(model, str(dst))
    return found


def _taps(job):
    """Every module output of the artifact's graph (it is the deploy form's own ONNX: the names match)."""
    import numpy as np

    from edgekit.targets.base import Tap, Taps

    exposed = job.work / "exposed.onnx"
    added = with_outputs(job.model_file, list(job.names.tensors), exposed)
    runner = ONNXRunner(exposed, job.threads)
    outputs = [o.name for o in runner.session.get_outputs()]
    ops = {t.name: t.op for t in job.names.tensors.values()}
    taps = [Tap(name, ops[name], name) for name in added]

    def run(image: np.ndarray) -> dict:
        return dict(zip(outputs, runner.session.run(None, {runner.input_name: np.ascontiguousarray(image)})))

    return Taps(taps, run, "the artifact, run by ONNX Runtime (CPU) with its module outputs added as graph outputs")


def _convert(job: ConvertJob) -> Converted:
    job.progress("exporting the deploy form to ONNX")
    onnx_path = export_onnx(job.deploy, job.size, job.work / "deploy.onnx")
    model_file = simplify_onnx(onnx_path, job.out / SPEC.model_file)
    return Converted(model_file, op_histogram(load_graph(model_file)), io_description(job.size))


# ---- on the phone: ONNX Runtime's onnxruntime_perf_test (the QNN target runs the same program) --------
def perf_test_parse(text: str):
    from edgekit.android_harness import perf_test_output

    return perf_test_output.parse(text)


def _perf_test_cpu_flags(model: str, run: RunSettings, device_dir: str) -> list[str]:
    """ONNX Runtime's perf test (flags from onnxruntime/test/perftest/command_args_parser.cc): `times`
    mode, generated inputs (-I), intra-op threads (-x), the CPU execution provider (-e cpu: ONNX
    Runtime's own MLAS kernels); it makes one warm-up run itself."""
    return ["-m", "times", "-r", str(run.runs), "-I", "-x", str(run.threads), "-e", "cpu", model]


HARNESS = Harness(
    name="onnxruntime_perf_test",
    binary="onnxruntime_perf_test",
    what="ONNX Runtime's onnxruntime_perf_test built for Android arm64 (for QNN artifacts: with the QNN "
         "execution provider, and --lib libQnnHtp.so, libQnnSystem.so, libQnnHtpV<arch>Stub.so, "
         "libQnnHtpV<arch>Skel.so from the QAIRT SDK; libonnxruntime.so too if your build needs it)",
    delegates=("cpu",),
    flags=_perf_test_cpu_flags,
    parse=perf_test_parse,
    host_module="edgekit.android_harness.host_perf_test",
    no_op_profile_on_host="no per-op table: onnxruntime_perf_test writes its profile (-p) to a file, not a table",
    env="LD_LIBRARY_PATH={dir}",
    # ONNX Runtime's onnxruntime/test/perftest options: it times generated (or test_data_set_*) inputs and has
    # no flag that writes outputs; onnx_test_runner prints only pass/fail against stored outputs
    no_tensor_io="onnxruntime_perf_test writes no outputs (no flag for it), so the phone's numbers cannot be "
                 "read back; on-device verification needs a runner that dumps outputs",
)


# ---- packaging: Android, ONNX Runtime's Android API (CPU) -------------------------------------------
ORT_MAVEN = "com.microsoft.onnxruntime:onnxruntime-android"


def kotlin_run() -> str:
    """The Kotlin that feeds one NCHW float input to an ONNX Runtime session and copies its first
    output out (ai.onnxruntime's OnnxTensor.createTensor / OrtSession.run)."""
    return """val shape = LongArray(INPUT_SHAPE.size) { INPUT_SHAPE[it].toLong() }
val tensor = OnnxTensor.createTensor(env, input.asFloatBuffer(), shape)
try {
    val result = session.run(mapOf(INPUT_NAME to tensor))
    try {
        output.asFloatBuffer().put((result.get(0) as OnnxTensor).floatBuffer)
    } finally {
        result.close()
    }
} finally {
    tensor.close()
}"""


def _kotlin_runtime(manifest):
    from edgekit.bundle.kotlin import KotlinRuntime

    return KotlinRuntime(
        setup=(f'Gradle: implementation("{ORT_MAVEN}:<version>") (ONNX Runtime for Android, CPU)',
               f"Copy {SPEC.model_file} and the labels into src/main/assets/"),
        imports=("ai.onnxruntime.OnnxTensor", "ai.onnxruntime.OrtEnvironment", "ai.onnxruntime.OrtSession"),
        fields="private val env = OrtEnvironment.getEnvironment()\nprivate val session: OrtSession",
        load=f"""val options = OrtSession.SessionOptions()
options.setIntraOpNumThreads(numThreads)
session = env.createSession(context.assets.open("{SPEC.model_file}").use {{ it.readBytes() }}, options)
check(session.inputNames.first() == INPUT_NAME && session.outputNames.first() == OUTPUT_NAME) {{
    "{SPEC.model_file} is not the model this class was generated for"
}}""",
        run=kotlin_run(),
        close="session.close()",
    )


def _snippet(spec: dict, manifest) -> tuple[str, str]:
    from edgekit.bundle import kotlin

    return kotlin.FILE_NAME, kotlin.snippet(spec, _kotlin_runtime(manifest))


SPEC = TargetSpec(
    name="onnx",
    summary="ONNX (opset 17, static shapes): ONNX Runtime here and on Android (CPU); the reference format",
    model_file="model.onnx",
    precisions=("fp32",),
    plan=DeployPlan(upsample=Upsample.BICUBIC, allowed_upsample=tuple(Upsample), fp16_compute=(),
                    int8_activations=()),
    convert=_convert,
    tolerances={"fp32": FP32_EXACT},
    runner=_runner,
    runner_label="ONNX Runtime (CPU)",
    taps=_taps,
    packaging=Packaging("android", float_io, _snippet),
    harness=HARNESS,
    tools=("onnx", "onnxsim", "onnxruntime"),
    quiet_env={"ORT_LOG_SEVERITY_LEVEL": "3"},  # ONNX Runtime's own log lines
)
