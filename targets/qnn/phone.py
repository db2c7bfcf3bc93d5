"""QNN on a phone: ONNX Runtime's onnxruntime_perf_test with the QNN EP, and the Android snippet."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgekit.android_harness.harnesses import RunSettings
from edgekit.errors import EdgekitError
from edgekit.targets import onnx as onnx_target
from edgekit.targets.qnn.options import FOLDER
from edgekit.targets.qnn.runner import _soc
from edgekit.targets.qnn.worker import COMPILED, _htp

# ---- packaging: Android, ONNX Runtime with the QNN EP --------------------------------------------------
ORT_QNN_MAVEN = "com.microsoft.onnxruntime:onnxruntime-android-qnn"


def _kotlin_runtime(manifest):
    from edgekit.bundle.kotlin import KotlinRuntime

    device = manifest.target_options["device"][0]
    sdk = manifest.target_info.get("qnn_sdk")
    return KotlinRuntime(
        setup=(f'Gradle: implementation("{ORT_QNN_MAVEN}:<version>") (ONNX Runtime with the QNN EP); its QNN '
               f"libraries must be QNN SDK {sdk} or newer, the SDK this context binary was compiled with",
               f"Copy {FOLDER}/ (the compiled model of each phone it was compiled for: "
               f"{', '.join(manifest.target_options['device'])}) and the labels into src/main/assets/; the model "
               f"loads from files (the EPContext model names its context binary by a relative path); this class "
               f"loads {device}'s ({_soc(device)}, Hexagon v{_htp(device).arch}): other phones need their own "
               "export"),
        imports=("ai.onnxruntime.OnnxTensor", "ai.onnxruntime.OrtEnvironment", "ai.onnxruntime.OrtSession",
                 "java.io.File"),
        fields=f'private val env = OrtEnvironment.getEnvironment()\nprivate val session: OrtSession\n'
               f'private val DEVICE = "{device}"',
        load=f"""val dir = File(context.filesDir, "{FOLDER}/$DEVICE").apply {{ mkdirs() }}
for (name in context.assets.list("{FOLDER}/$DEVICE") ?: emptyArray()) {{
    context.assets.open("{FOLDER}/$DEVICE/$name").use {{ src -> File(dir, name).outputStream().use {{ src.copyTo(it) }} }}
}}
val options = OrtSession.SessionOptions()
options.setIntraOpNumThreads(numThreads)
options.addQnn(mapOf("backend_path" to "libQnnHtp.so"))  // the HTP; no CPU fallback was compiled in
session = env.createSession(File(dir, "{COMPILED}").absolutePath, options)
check(session.inputNames.first() == INPUT_NAME && session.outputNames.first() == OUTPUT_NAME) {{
    "$DEVICE/{COMPILED} is not the model this class was generated for"
}}""",
        run=onnx_target.kotlin_run(),
        close="session.close()",
    )


def _app_files(manifest) -> list[str]:
    """Each phone's EPContext model and its context binaries; not source.onnx, which no app loads."""
    devices = manifest.target_info["devices"]
    return [f"{d}/{name}" for d, entry in devices.items()
            for name in (Path(entry["model"]).name, *entry["context_binaries"])]


def _snippet(spec: dict, manifest) -> tuple[str, str]:
    from edgekit.bundle import kotlin

    return kotlin.FILE_NAME, kotlin.snippet(spec, _kotlin_runtime(manifest))


# ---- on the phone: ONNX Runtime's onnxruntime_perf_test with the QNN EP ------------------------------
def _perf_test_flags(model: str, run: RunSettings, device_dir: str) -> list[str]:
    """ONNX Runtime's perf test: `times` mode, generated inputs (-I), the QNN EP on the HTP backend
    (flags from onnxruntime/test/perftest/command_args_parser.cc); it makes one warm-up run itself."""
    return ["-m", "times", "-r", str(run.runs), "-I", "-x", str(run.threads), "-e", "qnn",
            "-i", f"backend_path|{device_dir}/libQnnHtp.so", model]


def _qnn_model_files(manifest, profile) -> list[tuple[Path, str]]:
    """The model compiled for this phone's profile and its context binaries (they must sit side by
    side: the EPContext model names them by relative path)."""
    compiled = manifest.target_info.get("devices") or {}
    if profile.name not in compiled:
        built = ", ".join(f"{d} (v{info['htp_arch']})" for d, info in compiled.items()) or "no phone"
        arch = f"Hexagon v{profile.htp.arch}" if profile.htp else "no HTP edgekit compiles for"
        raise EdgekitError(f"{Path(manifest.artifact_dir).name} was compiled for {built}; this phone is {profile.name} "
                           f"({arch}): export it with --device {profile.name}")
    folder = Path(manifest.model_path) / profile.name
    entry = compiled[profile.name]
    return [(folder / Path(entry["model"]).name, Path(entry["model"]).name),
            *((folder / name, name) for name in entry["context_binaries"])]


def _qnn_libraries(profile) -> list[str]:
    """What the HTP backend needs on the phone for this arch (QAIRT SDK: lib/aarch64-android and
    lib/hexagon-v<arch>/unsigned)."""
    arch = profile.htp.arch if profile.htp else "??"
    return ["libQnnHtp.so", "libQnnSystem.so", f"libQnnHtpV{arch}Stub.so", f"libQnnHtpV{arch}Skel.so"]


# the ONNX target's program (the same onnxruntime_perf_test, given once), run with the QNN EP on the HTP
HARNESS = dataclasses.replace(
    onnx_target.HARNESS,
    delegates=("npu",),
    flags=_perf_test_flags,
    host_module=None,
    no_op_profile_on_host="",
    no_host="the HTP simulator gives the NPU's numerics, not its latency: profile QNN artifacts on a phone "
            "(--device s8gen1, ...)",
    model_files=_qnn_model_files,
    libraries=_qnn_libraries,
    env="LD_LIBRARY_PATH={dir} ADSP_LIBRARY_PATH={dir}",
)
