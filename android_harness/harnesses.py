"""The benchmark programs edgekit drives: how each is given, run and read.

The target table names one per target (`TargetSpec.profiler`); `edgekit profile` asks it for the
flags, the host stand-in and the parser, and knows nothing of any one program. A program for a
phone is given once by the user (`edgekit harness add PATH --kind NAME`): edgekit never downloads it.
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


@dataclass(frozen=True)
class Harness:
    name: str  # what `--kind` and the target table call it
    binary: str  # its file name in edgekit's cache and on the phone
    what: str  # what the user gives, for messages
    delegates: tuple[str, ...]  # the first is the default
    flags: Callable[[str, RunSettings, str], list[str]]  # (model path, settings, device dir) -> arguments
    parse: Callable[[str], object]  # the printed output -> an object with complete, summary(), op_profile, errors
    host_module: str | None = None  # `python -m` module that stands in for it on this machine
    no_op_profile_on_host: str = ""


def _benchmark_model_flags(model: str, run: RunSettings, device_dir: str) -> list[str]:
    flags = [f"--graph={model}", f"--num_threads={run.threads}", f"--num_runs={run.runs}",
             f"--warmup_runs={run.warmup}"]
    flags += {"cpu": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"], "nnapi": ["--use_nnapi=true"],
              "qnn": [f"--external_delegate_path={device_dir}/libQnnTFLiteDelegate.so"]}[run.delegate]
    if run.op_profile:
        flags.append("--enable_op_profiling=true")
    return flags


def _benchmark_model_parse(text: str):
    from android_harness import benchmark_output

    return benchmark_output.parse(text)


BENCHMARK_MODEL = Harness(
    name="benchmark_model",
    binary="benchmark_model",
    what="LiteRT's benchmark_model for Android arm64",
    delegates=("cpu", "gpu", "nnapi", "qnn"),
    flags=_benchmark_model_flags,
    parse=_benchmark_model_parse,
    host_module="android_harness.host_benchmark",
    no_op_profile_on_host="no per-op table: the host harness has no profiler (ai-edge-litert exposes none)",
)

HARNESSES: dict[str, Harness] = {h.name: h for h in (BENCHMARK_MODEL,)}


def get_harness(name: str) -> Harness:
    if name not in HARNESSES:
        raise EdgekitError(f"--kind {name!r} is not one of: {', '.join(HARNESSES)}")
    return HARNESSES[name]


def host_command(harness: Harness, model: Path, run: RunSettings) -> list[str]:
    if harness.host_module is None:
        raise EdgekitError(f"{harness.name} has no host stand-in: profile on a phone (--device PROFILE|SERIAL)")
    return [sys.executable, "-m", harness.host_module, *harness.flags(str(model), run, "")]
