"""The harness type: how a benchmark program edgekit drives on a phone is given, pushed, run and read.

Each target declares its own (`TargetSpec.harness`, in its module under targets/: LiteRT's
benchmark_model for TFLite, ONNX Runtime's onnxruntime_perf_test for QNN, ExecuTorch's
executor_runner); `edgekit profile` (edgekit.profile) asks it for the flags, the files to push (the
model files for this phone, the runtime libraries), the environment, the host stand-in and the
parser, and knows nothing of any one program. The output parsers and host stand-ins sit next to
this module. A program for a phone, and the libraries it needs, are given once by the user
(`edgekit harness add PATH --kind NAME [--lib FILE]...`): edgekit never downloads them.
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
class TensorIO:
    """How a runner reads its input tensor from a file and writes its output tensor to one, for
    verification on the phone: the flags for one run, and the file the first output lands in."""
    flags: Callable[[dict, str, str], list[str]]  # (manifest io, device input file, device output base) -> flags
    output_file: Callable[[str], str]  # the output base given in the flags -> the first output's file
    source: str  # where the runner defines these flags (cited in the report)


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
    tensor_io: TensorIO | None = None  # None: the runner cannot take inputs from files or dump outputs
    no_tensor_io: str = ""  # why not, in one line
    # delegates that compute an fp32 model in fp16 by default (held to the fp16 tolerance on the phone)
    fp16_delegates: tuple[str, ...] = ()


def host_command(harness: Harness, model: Path, run: RunSettings) -> list[str]:
    if harness.host_module is None:
        raise EdgekitError(harness.no_host or f"{harness.name} has no host stand-in: profile on a phone "
                                              "(--device PROFILE|SERIAL)")
    return [sys.executable, "-m", harness.host_module, *harness.flags(str(model), run, "")]
