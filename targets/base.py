"""What a target declares: one `TargetSpec` per output format, collected in `targets.TARGETS`.

Generic code (export, verify, runtime, inspect, sweep, package, profile, the CLI) asks a spec for a
target's facts and never names a target. A spec is pure data plus functions whose heavy imports
(torch, tensorflow, coremltools, executorch) happen when they are called, so reading the table is
instant (`edgekit --help` reads it).

A target's options are a frozen dataclass whose fields carry their command-line flag, help and
choices (`option()`); `parse_options` turns the flags a user gave into that dataclass, and a flag
that belongs to another target is a one-line error naming the targets that take it. One flag means
one thing across the table: `check_options` refuses two targets declaring the same flag differently,
and a flag edgekit shares between commands (`--device`, a phone) only through its declaration here
(`device_option`), so `sweep` can fill it from the phone it runs on.

Tolerance presets (`FP32_EXACT`, `FP16`, `INT8`) are declared once here; a target overrides only
where its runtime needs another bar.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.android_harness.harnesses import Harness
from edgekit.deploy import DeployPlan, Upsample  # noqa: F401 - re-exported for target modules
from edgekit.errors import EdgekitError


@dataclass(frozen=True)
class Tolerance:
    """What an artifact must meet against the PyTorch model it came from, on held-out photos.

    sqnr_min_db: every image's SQNR (signal power / noise power of the logits) at least this;
    sqnr_median_db: the median over the images at least this; pixel_agreement: for segmentation, the
    share of output pixels keeping their class; max_rel: max |diff| / max |reference| (fp32, where
    the bar is PyTorch's own rounding error)."""

    sqnr_min_db: float | None = None
    sqnr_median_db: float | None = None
    pixel_agreement: float | None = None
    max_rel: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


# The presets, per precision kind, on held-out photos:
FP32_EXACT = Tolerance(max_rel=1e-4)  # the trained function to float rounding
FP16 = Tolerance(sqnr_min_db=40.0, pixel_agreement=0.99)
INT8 = Tolerance(sqnr_min_db=20.0, sqnr_median_db=25.0, pixel_agreement=0.95)


class NotRunnable(EdgekitError):
    """This machine cannot run the artifact's own model (CoreML prediction needs macOS, ...)."""


def option(default: Any, flag: str, help: str, choices: tuple[str, ...] | None = None, type: type = str):
    """A target option field: its default, command-line flag, help and allowed values."""
    return field(default=default, metadata={"flag": flag, "help": help, "choices": choices, "type": type})


def bias_correction_option(default: str):
    """--bias-correction (the deploy pass bias_correction), declared alike by every target taking it."""
    return option(default, "--bias-correction", "int8 weights: each layer's bias corrected for the mean shift its "
                  "int8 weights cause on the calibration images (default on for QNN w8a16, off for TFLite int8) "
                  "| off", ("on", "off"))


def keep_float_option():
    """--keep-float (None: the int8 recipe search chooses), declared alike by every target that searches."""
    return option(None, "--keep-float", "int8: keep float the N ops (TFLite; ExecuTorch, CoreML: residual blocks) whose "
                  "quantisation costs most on the calibration photos (slower, closer to fp32); default: chosen "
                  "by the recipe search on these weights", None, int)


def int8_goal_option():
    from edgekit.int8.search import DEFAULT_GOAL

    return option(DEFAULT_GOAL, "--int8-goal", "int8 recipe search: MEDIAN,MIN SQNR in dB on held-out calibration "
                  "photos (against the float graph) and SPEEDUP over the float graph on this host (0: not judged) "
                  "that make int8 worth shipping")


def search_budget_option():
    from edgekit.int8.search import DEFAULT_BUDGET_S

    return option(DEFAULT_BUDGET_S, "--search-budget", "int8 recipe search: seconds it may spend (checked "
                  "between builds)", None, float)


# Flags that mean one thing everywhere: a target option with one of them is declared by its helper,
# and the commands that know a phone (sweep) fill it from that phone.
SHARED_FLAGS = {"--device": "the phone profiles an artifact is built for, declared with device_option()"}


def device_option(default: tuple[str, ...], choices: tuple[str, ...], help: str):
    """`--device`: the phone profiles (edgekit.devices names) an artifact is built for, comma-separated.
    `sweep` on a phone sets it to that phone's profile."""
    return field(default=default, metadata={"flag": "--device", "help": help, "choices": choices, "type": tuple,
                                            "shared": "device"})


@dataclass(frozen=True)
class NoOptions:
    pass


@dataclass(frozen=True)
class ConvertJob:
    """Everything a target's convert function gets."""

    variant: Any  # edgekit.registry.Variant
    size: tuple[int, int]
    precision: str
    options: Any  # the target's options dataclass
    deploy: Any  # the deploy form (torch nn.Module)
    calibration: Any  # np.ndarray (N, 3, H, W) normalised, or None
    work: Path  # scratch folder, removed after the export
    out: Path  # the artifact folder being written
    progress: Callable[[str], None]
    # how many distinct images the calibration samples came from (sample j from image j % originals;
    # calibration/sources.py): what an int8 recipe search holds out
    calibration_originals: int = 0
    # with --eval-data and --max-drop: the labelled set as an int8 recipe search's judge
    # (edgekit.int8.search.TaskJudge); targets that do not search ignore it
    task_judge: Any = None


@dataclass(frozen=True)
class QuantizationJob:
    """What a target's quantization analysis gets (`edgekit inspect --quantization`)."""

    variant: Any
    size: tuple[int, int]
    precision: str  # a calibrated precision of the target
    deploy: Any  # its deploy form (torch nn.Module)
    calibration: Any  # np.ndarray (N, 3, H, W), the calibration samples
    images: Any  # np.ndarray (N, 3, H, W), held-out photos (never calibration ones)
    image_names: tuple[str, ...]
    work: Path
    progress: Callable[[str], None]


@dataclass(frozen=True)
class TapJob:
    """What a target's tap function gets (`edgekit debug`): the artifact, and the deploy form's ONNX
    graph whose node names carry the PyTorch module paths (edgekit.graph_names)."""

    model_file: Path
    manifest: Any
    deploy: Any  # the deploy form the artifact was converted from (torch nn.Module), rebuilt from the manifest
    deploy_onnx: Path  # the deploy form exported as the conversion exported it (onnxsim'd)
    names: Any  # edgekit.graph_names.GraphNames of deploy_onnx: the module outputs worth tapping
    threads: int
    work: Path  # scratch folder, removed afterwards
    progress: Callable[[str], None]


@dataclass(frozen=True)
class Tap:
    """One intermediate tensor of an artifact: its own name and op, the deploy-form ONNX tensor it
    stands for, and (int8/int16 activations) the quantisation it is stored with."""

    name: str
    op: str
    tensor: str  # the ONNX tensor in TapJob.deploy_onnx (a key of TapJob.names.tensors)
    quantization: dict | None = None  # {"scale", "zero_point", "qmin", "qmax"}, per tensor
    layout: str = "NCHW"  # "NHWC": a 4-D tensor the artifact keeps channels-last (onnx2tf's)


@dataclass
class Taps:
    """A target's intermediate tensors: `run(image (1, 3, H, W)) -> {tap name: array}` (any layout the
    artifact keeps; dequantised), what ran, what could not be matched, and what the user should know."""

    taps: list[Tap]
    run: Callable[[Any], dict]
    ran: str
    unmatched: list[str] = field(default_factory=list)  # the artifact's tensors related to no module output
    notes: list[str] = field(default_factory=list)
    # (all images (N, 3, H, W)) -> None: run once before `run` (a runner that starts a process per call)
    prepare: Callable[[Any], None] | None = None


@dataclass
class Converted:
    """What a convert function returns: the model file (inside job.out), its op histogram, its I/O,
    target facts for the manifest, and (where the target converts a torch model that differs from
    the deploy form, like a calibrated one) that torch model."""

    model_file: Path
    ops: dict[str, int]
    io: dict
    target_info: dict = field(default_factory=dict)
    torch_model: Any = None
    # deploy passes the converter itself ran on the deploy form (the int8 search's chosen recipe):
    # the manifest's rewrites list them after the planned ones, marked as chosen by the search
    searched_rewrites: tuple[str, ...] = ()


def float_io(manifest, model_path: Path) -> tuple[dict, dict]:
    """Packaging.io of a model with float input and output: the recorded io, the output's NCHW shape."""
    io = manifest.io
    return {**io["input"], "quantization": None}, {**io["output"], "shape": manifest.logits_shape(),
                                                    "quantization": None}


@dataclass(frozen=True)
class Packaging:
    """How a target's artifacts become an app bundle (edgekit.bundle reads it)."""

    platform: str  # "android" | "ios"
    io: Callable[[Any, Path], tuple[dict, dict]]  # (manifest, model path) -> (input, output) for model.json
    snippet: Callable[[dict, Any], tuple[str, str]]  # (model.json dict, manifest) -> (file name, code)
    compile: Callable[[Path, Path], str | None] | None = None  # (model in bundle, bundle) -> note/file
    # for a model that is a folder: the files in it an app loads, relative to it (None: all of them)
    app_files: Callable[[Any], list[str]] | None = None  # (manifest) -> relative paths


@dataclass(frozen=True)
class TargetSpec:
    name: str
    summary: str  # one line, for help and docs
    model_file: str  # the model's file (or package folder) name inside an artifact
    precisions: tuple[str, ...]  # the first is the default
    plan: DeployPlan
    convert: Callable[[ConvertJob], Converted]
    tolerances: Mapping[str, Tolerance]
    # the host runner used for verification, predict and the host harness: (model file, manifest,
    # threads) -> an object with run(images NCHW, expected_shape) -> outputs NCHW; raises NotRunnable
    runner: Callable[..., Any]
    runner_label: str  # what runs the artifact on the host, for reports
    options: type = NoOptions
    runner_note: str | None = None  # what a long run on the host runner should know (eval says it)
    # (the target's options, precision) -> deploy passes the options ask for (edgekit.deploy.plan_rewrites)
    option_passes: Callable[[Any, str], tuple[str, ...]] | None = None
    # where the host cannot run the artifact: the torch model that was converted, rebuilt from the
    # manifest and the reference (compared instead, and said so)
    proxy: Callable[[Any, Any], Any] | None = None
    # checks of the artifact itself beyond the outputs verification compares (structure, stored weights,
    # other devices' compiled models): (model file, manifest, converted torch model, images, reference
    # outputs) -> a dict with "passed"
    checks: Callable[..., dict] | None = None
    packaging: Packaging | None = None
    # the program that measures it on a phone: how it is pushed, run and read (None: not profiled)
    harness: Harness | None = None
    not_profiled: str = ""  # why not, when harness is None
    # environment settings its frameworks read when they load, to keep them quiet (edgekit.logs)
    quiet_env: Mapping[str, str] = field(default_factory=dict)
    # the report's lines about what `checks` found: (the checks dict) -> lines
    check_lines: Callable[[dict], list[str]] | None = None
    tools: tuple[str, ...] = ()  # PyPI distributions whose versions go into the manifest
    validate: Callable[[str, Any], None] | None = None  # (precision, options): cross-option rules
    # (precision, options, calibration set): what the conversion needs of the calibration images, checked
    # before the output folder is made (the int8 search needs 2 distinct images)
    check_calibration: Callable[[str, Any, Any], None] | None = None
    # per-op sensitivity of its quantised form on held-out photos (edgekit inspect --quantization)
    quantization: Callable[[QuantizationJob], dict] | None = None
    # what the conversion did, in a few lines for the export report: (manifest) -> lines
    describe: Callable[[Any], list[str]] | None = None
    # the artifact's intermediate tensors, matched to the deploy form's modules (`edgekit debug`); None:
    # a target whose artifact the host cannot run taps its proxy (edgekit.layer_debug says so)
    taps: Callable[[TapJob], Taps] | None = None

    @property
    def default_precision(self) -> str:
        return self.precisions[0]

    def check_precision(self, precision: str) -> str:
        if precision not in self.precisions:
            raise EdgekitError(f"--precision {precision!r} is not one of: {', '.join(self.precisions)} "
                               f"(for {self.name})")
        return precision

    def needs_calibration(self, precision: str) -> bool:
        return precision in self.plan.int8_activations

    def tolerance(self, precision: str) -> Tolerance:
        return self.tolerances[precision]


def option_fields(options_type: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(options_type) if "flag" in f.metadata]


def _meaning(f: dataclasses.Field) -> tuple:
    """What must agree between two targets declaring one flag: for a shared flag its field and kind
    (each target takes the phones it can build for: its own choices, checked by parse_options)."""
    m = f.metadata
    if m.get("shared"):
        return f.name, m["type"], m["shared"]
    return f.name, m["type"], m["choices"], m["help"]


def check_options(specs: list[TargetSpec]) -> None:
    """One flag, one meaning: every target declaring a flag declares the same field (name, type,
    choices, help; `_meaning`), and a shared flag only through its helper. Raises EdgekitError naming
    both."""
    seen: dict[str, tuple[str, dataclasses.Field]] = {}
    for spec in specs:
        for f in option_fields(spec.options):
            flag = f.metadata["flag"]
            if flag in SHARED_FLAGS and f.metadata.get("shared") is None:
                raise EdgekitError(f"target {spec.name}: {flag} is edgekit's shared option "
                                   f"({SHARED_FLAGS[flag]}); a target cannot give it another meaning")
            if flag in seen and _meaning(seen[flag][1]) != _meaning(f):
                raise EdgekitError(f"target {spec.name} declares {flag} differently from target {seen[flag][0]}: "
                                   "one flag must mean one thing (rename it, or declare it the same way)")
            seen.setdefault(flag, (spec.name, f))


def device_fields(spec: TargetSpec) -> list[str]:
    """The target's option fields that name the phones it builds for (the shared --device)."""
    return [f.name for f in option_fields(spec.options) if f.metadata.get("shared") == "device"]


def _convert_value(f: dataclasses.Field, value: Any) -> Any:
    meta = f.metadata
    flag = meta["flag"]
    kind = meta["type"]
    if kind is int:
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise EdgekitError(f"{flag} {value!r} is not a whole number") from None
    elif kind is float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise EdgekitError(f"{flag} {value!r} is not a number") from None
    elif kind is tuple:
        value = tuple(part.strip().lower() for part in str(value).split(",") if part.strip())
        if not value:
            raise EdgekitError(f"{flag} is empty")
    else:
        value = str(value).lower()
    choices = meta["choices"]
    if choices is not None:
        for item in value if isinstance(value, tuple) else (value,):
            if item not in choices:
                raise EdgekitError(f"{flag} {item!r} is not one of: {', '.join(map(str, choices))}")
    return value


def parse_options(spec: TargetSpec, given: Mapping[str, Any], targets: Mapping[str, TargetSpec]):
    """The target's options dataclass from the option values a user gave (field name -> value;
    None means not given). A value for a field this target does not have is refused, naming the
    targets that take it."""
    own = {f.name: f for f in option_fields(spec.options)}
    values = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in own:
            takers = [t.name for t in targets.values() if any(f.name == name for f in option_fields(t.options))]
            flag = next((f.metadata["flag"] for t in targets.values() for f in option_fields(t.options)
                         if f.name == name), f"--{name}")
            raise EdgekitError(f"{flag} applies to {', '.join(takers) or 'no target'} only, not {spec.name}")
        values[name] = _convert_value(own[name], value)
    return spec.options(**values)


def options_from_manifest(spec: TargetSpec, recorded: Mapping[str, Any]):
    """The options dataclass an artifact was exported with (its manifest's target_options)."""
    known = {f.name for f in dataclasses.fields(spec.options)}
    return spec.options(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in recorded.items() if k in known})


def options_dict(options: Any) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(options).items()}
