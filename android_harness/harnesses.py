"""The benchmark programs edgekit drives: how each is given, run and read.

The target table names one per target (`TargetSpec.profiler`); `edgekit profile` asks it for the
flags, the files to push (the model files for this phone, the runtime libraries), the environment,
the host stand-in and the parser, and knows nothing of any one program. A program for a phone, and
the libraries it needs, are given once by the user (`edgekit harness add PATH --kind NAME [--lib
FILE]...`): edgekit never downloads them.

- benchmark_model: LiteRT's, for TFLite artifacts (android_harness/benchmark_output.py reads it);
- onnxruntime_perf_test: ONNX Runtime's, built for Android with the QNN execution provider, for QNN
  artifacts: it loads the EPContext model an app loads (android_harness/perf_test_output.py reads
  it), with Qualcomm's HTP runtime libraries from the QAIRT SDK next to it;
- executor_runner: ExecuTorch's, for .pte artifacts (android_harness/executor_runner_output.py);
  its host stand-in runs executorch.runtime.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EdgekitError


@dataclass(frozen=True)
class RunSettings:
    threads: int
    delegate: str
    runs: int
    warmup: int
    op_profile: bool


def _single_model_file(manifest, profile) -> list[tuple[Path, str]]:
    """The artifact's model file, pushed under a name unique to the artifact."""
    model = Path(manifest.model_path)
    return [(model, f"{model.parent.name}-{model.name}")]


@dataclass(frozen=True)
class Harness:
    name: str  # what `--kind` and the target table call it
    binary: str  # its file name in edgekit's cache and on the phone
    what: str  # what the user gives, for messages
    delegates: tuple[str, ...]  # the first is the default
    flags: Callable[[str, RunSettings, str], list[str]]  # (model path, settings, device dir) -> arguments
    parse: Callable[[str], object]  # the printed output -> an object with complete, summary(), op_profile, errors
    host_module: str | None = None  # `python -m` module that stands in for it on this machine
    no_host: str = ""  # why it has no host stand-in
    no_op_profile_on_host: str = ""
    # the files to push for an artifact on a phone of this profile: [(local file, remote name)], the
    # first is the model the flags name; raises EdgekitError if the artifact cannot run on that phone
    model_files: Callable[[object, object], list[tuple[Path, str]]] = _single_model_file
    libraries: Callable[[object], list[str]] = lambda profile: []  # required files given with --lib
    env: str = ""  # environment for the run; {dir} is the device folder


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


BENCHMARK_MODEL = Harness(
    name="benchmark_model",
    binary="benchmark_model",
    what="LiteRT's benchmark_model for Android arm64",
    delegates=("cpu", "gpu", "nnapi", "qnn-tflite"),
    flags=_benchmark_model_flags,
    parse=_benchmark_model_parse,
    host_module="edgekit.android_harness.host_benchmark",
    no_op_profile_on_host="no per-op table: the host harness has no profiler (ai-edge-litert exposes none)",
)

def _perf_test_flags(model: str, run: RunSettings, device_dir: str) -> list[str]:
    """ONNX Runtime's perf test: `times` mode, generated inputs (-I), the QNN EP on the HTP backend
    (flags from onnxruntime/test/perftest/command_args_parser.cc); it makes one warm-up run itself."""
    return ["-m", "times", "-r", str(run.runs), "-I", "-x", str(run.threads), "-e", "qnn",
            "-i", f"backend_path|{device_dir}/libQnnHtp.so", model]


def _perf_test_parse(text: str):
    from edgekit.android_harness import perf_test_output

    return perf_test_output.parse(text)


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


PERF_TEST = Harness(
    name="onnxruntime_perf_test",
    binary="onnxruntime_perf_test",
    what="ONNX Runtime's onnxruntime_perf_test built for Android arm64 with the QNN execution provider "
         "(--lib: libQnnHtp.so, libQnnSystem.so, libQnnHtpV<arch>Stub.so, libQnnHtpV<arch>Skel.so from the "
         "QAIRT SDK, and libonnxruntime.so if your build needs it)",
    delegates=("npu",),
    flags=_perf_test_flags,
    parse=_perf_test_parse,
    no_host="the HTP simulator gives the NPU's numerics, not its latency: profile QNN artifacts on a phone "
            "(--device s8gen1, ...)",
    model_files=_qnn_model_files,
    libraries=_qnn_libraries,
    env="LD_LIBRARY_PATH={dir} ADSP_LIBRARY_PATH={dir}",
)

def _executor_runner_flags(model: str, run: RunSettings, device_dir: str) -> list[str]:
    """ExecuTorch's executor_runner (gflags of examples/portable/executor_runner): the first of the
    warmup + runs executions is the warm-up the parser leaves out."""
    return [f"--model_path={model}", f"--num_executions={run.warmup + run.runs}", f"--cpu_threads={run.threads}"]


def _executor_runner_parse(text: str):
    from edgekit.android_harness import executor_runner_output

    return executor_runner_output.parse(text)


EXECUTOR_RUNNER = Harness(
    name="executor_runner",
    binary="executor_runner",
    what="ExecuTorch's executor_runner built for Android arm64 with the XNNPACK backend "
         "(examples/portable/executor_runner, linked with xnnpack_backend)",
    delegates=("cpu",),
    flags=_executor_runner_flags,
    parse=_executor_runner_parse,
    host_module="edgekit.android_harness.host_executor_runner",
    no_op_profile_on_host="no per-op table: executor_runner writes ETDump files, not a table",
)

HARNESSES: dict[str, Harness] = {h.name: h for h in (BENCHMARK_MODEL, PERF_TEST, EXECUTOR_RUNNER)}


def get_harness(name: str) -> Harness:
    if name not in HARNESSES:
        raise EdgekitError(f"--kind {name!r} is not one of: {', '.join(HARNESSES)}")
    return HARNESSES[name]


def host_command(harness: Harness, model: Path, run: RunSettings) -> list[str]:
    if harness.host_module is None:
        raise EdgekitError(harness.no_host or f"{harness.name} has no host stand-in: profile on a phone "
                                              "(--device PROFILE|SERIAL)")
    return [sys.executable, "-m", harness.host_module, *harness.flags(str(model), run, "")]
