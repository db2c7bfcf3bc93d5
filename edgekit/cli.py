"""The `edgekit` command. Each command parses options and calls one library function. One file on
purpose, though long: it is the whole command-line surface (every command, its options and its exit
code), each command a thin wrapper over the library.

Heavy frameworks (torch, tensorflow, coremltools) are imported inside those functions, never here,
so `edgekit --help` answers instantly.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from edgekit import __version__
from edgekit.artifacts import ARTIFACTS_DIR
from edgekit.errors import EdgekitError
from edgekit.targets import DEFAULT_TARGET, TARGETS, harnesses
from edgekit.targets.base import option_fields

# typer (0.29) prints a type beside every option in --help, switches included ("--overwrite <bool>"),
# which reads as if a switch took a value; it takes none (`--overwrite true` is refused). Show none.
if hasattr(typer.core, "TyperOption") and hasattr(typer.core.TyperOption, "display_type_rich"):
    _display_type = typer.core.TyperOption.display_type_rich
    typer.core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _display_type(self, ctx)

app = typer.Typer(
    name="edgekit",
    help="EfficientViT from PyTorch to verified on-device artifacts (see `edgekit targets`) and on-device latencies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False, "entry": False, "capture": None}
T = TypeVar("T")
E = TypeVar("E", bound=Enum)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
VariantArg = Annotated[str, typer.Argument(help="Variant name, e.g. b0-seg, b1-cls, m0-cls.")]
TargetOpt = Annotated[str, typer.Option("--target", "-t", help=" | ".join(TARGETS) + " (edgekit targets)")]
PrecisionOpt = Annotated[str | None, typer.Option("--precision", "-p", help="; ".join(
    f"{t.name}: {' | '.join(t.precisions)}" for t in TARGETS.values()) + " (the first is the default)")]
UpsampleOpt = Annotated[
    str | None, typer.Option("--upsample", help="exact | bilinear | bicubic (each target takes some; default its own)")
]
ResolutionOpt = Annotated[
    str | None, typer.Option("--resolution", "-r", help="Input HxW (or one side for square); multiples of 32.")
]
WeightsOpt = Annotated[
    Path | None, typer.Option("--weights", "-w", help="The authors' checkpoint (.pt/.pth) or timm's (.safetensors, "
                                                      ".bin, or a Hugging Face model folder), loaded strictly, "
                                                      "tensors only.")
]


def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a library function; an EdgekitError becomes one line on stderr and its exit code, an
    interruption one line and 130 (every artifact, bundle and result is written atomically)."""
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing half-written was left (outputs are written atomically)", err=True)
        raise typer.Exit(130) from None
    except EdgekitError as e:
        if _state["debug"]:
            if e.log:
                sys.stderr.write(f"--- captured converter output ---\n{e.log.rstrip()}\n--- end ---\n")
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None


def _exit_with(verdict) -> None:
    """A run's verdict (edgekit.phones.RunVerdict): its error line on stderr and its exit code."""
    if verdict.error:
        typer.echo(f"error: {verdict.error}", err=True)
        raise typer.Exit(verdict.exit_code)


def _phone_flags_need_device(**given: Any) -> None:
    """A phone-only flag given without --device: one line, exit 1."""
    for name, value in given.items():
        if value:
            typer.echo(f"error: --{name.replace('_', '-')} is for a phone: add --device PHONE", err=True)
            raise typer.Exit(1)


class _Lines:
    """Progress as plain lines on stderr, for a long command whose stderr is not a terminal (a log file,
    CI): a spinner would draw nothing there, and a sweep ran 276 s in silence."""

    def update(self, message: str) -> None:
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _status(message: str):
    """A spinner on stderr while long work runs (stdout stays clean for --json); one line per step
    when stderr is not a terminal (a log, CI, a pipe), where a spinner would show nothing."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        return _Lines()  # only the steps: an error before the first stays the command's one line
    return console.status(message)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _show(data: Any, as_json: bool, table: str, to_json: Callable[[], Any] | None = None) -> None:
    """Every command's tail: JSON on stdout with --json, else edgekit.report's `table` of it (imported
    only then: rich tables cost start-up time a script does not need)."""
    if as_json:
        return _print_json(to_json() if to_json else data)
    from edgekit import report

    getattr(report, table)(data)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks and the frameworks' output.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the frameworks' own output "
                                                                  "(TensorFlow, coremltools, converters).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    from edgekit.logs import VERBOSE_ENV, quiet_process
    from edgekit.targets import quiet_env

    _state["debug"] = debug or os.environ.get("EDGEKIT_DEBUG") == "1"
    if verbose or _state["debug"]:
        before = os.environ.get(VERBOSE_ENV)
        os.environ[VERBOSE_ENV] = "1"  # the frameworks' output, in this process and the ones it starts

        def restore() -> None:  # an in-process caller (a test runner) must not inherit it
            if before is None:
                os.environ.pop(VERBOSE_ENV, None)
            else:
                os.environ[VERBOSE_ENV] = before

        ctx.call_on_close(restore)
    if _state["entry"] and _state["capture"] is None:  # the real command, not an in-process test runner
        _state["capture"] = quiet_process(quiet_env())


@app.command()
def variants(as_json: JsonOpt = False) -> None:
    """List the model zoo: name, task, dataset, default resolution, the papers' params and MACs."""
    from edgekit.info import list_variants

    rows = _run(list_variants)
    _show(rows, as_json, "variants_table")


@app.command()
def info(
    variant: VariantArg,
    resolution: ResolutionOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a variant and report measured params/MACs next to the paper's, and its output shape."""
    from edgekit.info import describe_variant

    data = _run(describe_variant, variant, resolution, weights)
    _show(data, as_json, "info_table")


@app.command()
def inspect(
    variant: VariantArg,
    target: TargetOpt = DEFAULT_TARGET,
    resolution: ResolutionOpt = None,
    weights: WeightsOpt = None,
    upsample: UpsampleOpt = None,
    precision: PrecisionOpt = None,
    quantization: Annotated[bool, typer.Option("--quantization", help="Rank the quantised ops by the fidelity "
                                                                      "each costs on held-out photos (minutes).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show the deploy form for a target: op histogram, rewrites applied and their measured effect."""
    from edgekit.deploy import Upsample
    from edgekit.inspect import inspect_variant, quantization_analysis

    up = _run(_choice, Upsample, upsample, "--upsample") if upsample else None
    with _status(f"building and measuring the {target} deploy form of {variant}") as status:
        if quantization:
            data = _run(quantization_analysis, variant, target, resolution, weights, precision,
                        progress=lambda msg: status.update(msg))
        else:
            data = _run(inspect_variant, variant, target, resolution, weights, up, precision,
                        progress=lambda msg: status.update(msg))
    _show(data, as_json, "quantization_tables" if quantization else "inspect_tables")


def _with_target_options(fn, shared_from_command: bool = False):
    """Add one option per target-option field in the table (--layout, --io, --ios, ...) to a
    command, collected into `target_options`: a new target's options appear without touching the
    CLI. Each flag is None unless given; the target's table entry validates it. The table has already
    refused two targets declaring one flag differently (targets.register), so targets sharing a flag
    share its help. `shared_from_command`: the command has the shared flags itself (sweep's --device
    is the phone it runs on, which fills the targets' --device), so they are not added."""
    import inspect
    import typing

    from edgekit.targets.base import SHARED_FLAGS

    fields = {}
    for spec in TARGETS.values():
        for f in option_fields(spec.options):
            if shared_from_command and f.metadata["flag"] in SHARED_FLAGS:
                continue
            fields.setdefault(f.name, (f, []))[1].append(spec.name)
    signature = inspect.signature(fn, eval_str=True)  # this module's annotations are strings
    params = [p for p in signature.parameters.values() if p.name != "target_options"]
    hints = typing.get_type_hints(fn, include_extras=True)
    annotations = {k: v for k, v in hints.items() if k not in ("target_options", "return")}
    for name, (f, owners) in fields.items():
        kind = f.metadata["type"]
        annotation = Annotated[(int if kind is int else str) | None,
                               typer.Option(f.metadata["flag"], help=f"{f.metadata['help']} ({', '.join(owners)})")]
        params.append(inspect.Parameter(f"opt_{name}", inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=annotation))
        annotations[f"opt_{name}"] = annotation

    def command(**kwargs):
        given = {k[len("opt_"):]: kwargs.pop(k) for k in list(kwargs) if k.startswith("opt_")}
        return fn(**kwargs, target_options=given)

    command.__name__, command.__doc__ = fn.__name__, fn.__doc__
    command.__signature__ = signature.replace(parameters=params)
    command.__annotations__ = annotations
    return command


ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Threads for PyTorch and the host runner "
                                                                  "(default: PyTorch's, one per core; 1 is often "
                                                                  "faster on a busy machine).")]
VerifyImagesOpt = Annotated[
    Path | None, typer.Option("--verify-images", help="Verify on your own photos (a folder) instead of the "
                                                      "built-in held-out set.")]
AllowCalibrationOpt = Annotated[
    bool, typer.Option("--allow-calibration-images", help="Verify even on photos that were used for calibration "
                                                          "(reported as such).")]


DataOpt = Annotated[Path, typer.Option("--data", "-d", help="A labelled validation set in its real layout: "
                                                            "Cityscapes, ADE20K, ImageNet, or an SR set (HR/ + "
                                                            "LR_bicubic/X2, DIV2K, HR photos only; docs/accuracy.md).")]
FormatOpt = Annotated[str, typer.Option("--format", help="auto | cityscapes | ade20k | imagenet | sr-benchmark | "
                                                         "div2k | hr-only (auto: from the folder's layout).")]
MaxDropOpt = Annotated[float | None, typer.Option("--max-drop", help="Fail (exit 3) when the artifact loses more "
                                                                     "than this many points of mIoU or top-1 "
                                                                     "against PyTorch (1 point = 0.01; PSNR: dB).")]


def export(
    variant: VariantArg,
    target: TargetOpt = DEFAULT_TARGET,
    precision: PrecisionOpt = None,
    resolution: ResolutionOpt = None,
    weights: WeightsOpt = None,
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="Folder of .jpg/.png or an .npy batch (calibrated precisions).")
    ] = None,
    num_calibration: Annotated[int, typer.Option("--num-calibration", help="Calibration samples.")] = 8,
    upsample: UpsampleOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for artifact directories.")] = ARTIFACTS_DIR,
    verify_images: VerifyImagesOpt = None,
    allow_calibration_images: AllowCalibrationOpt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an artifact of the same name made from "
                                                                "other weights or options.")] = False,
    threads: ThreadsOpt = None,
    eval_data: Annotated[Path | None, typer.Option("--eval-data", help="After verification, score mIoU or top-1 on "
                                                                       "this labelled set against PyTorch and record "
                                                                       "it (see `edgekit eval`).")] = None,
    max_drop: MaxDropOpt = None,
    stand_in: Annotated[str, typer.Option(
        "--stand-in", help="Without --weights: plain random weights, or trained-like ones whose depthwise/MBConv "
                           "activation ranges spread 100x across channels, as trained EfficientViT's do (what "
                           "breaks naive int8).")] = "plain",
    as_json: JsonOpt = False,
    target_options: dict | None = None,
) -> None:
    """Export a variant as a verified artifact directory (model, labels, edgekit.json)."""
    from edgekit.deploy import Upsample
    from edgekit.export import ExportOptions
    from edgekit.export import export as run_export
    from edgekit.verify import require_passed

    opts = ExportOptions(
        variant=variant,
        target=target,
        precision=precision,
        resolution=resolution,
        weights=weights,
        target_options=target_options or {},
        calibration=calibration,
        num_calibration=num_calibration,
        upsample=_run(_choice, Upsample, upsample, "--upsample") if upsample else None,
        output=output,
        verify_images=verify_images,
        allow_calibration_images=allow_calibration_images,
        overwrite=overwrite,
        threads=threads,
        eval_data=eval_data,
        max_drop=max_drop,
        stand_in=stand_in.lower(),
    )
    with _status("exporting") as status:
        manifest = _run(run_export, opts, lambda msg: status.update(msg))
    _show(manifest, as_json, "export_report", manifest.to_dict)
    _run(require_passed, manifest.verification)


app.command("export")(_with_target_options(export))


DEVICE_HELP = ("host, a profile (every connected phone of it: s8gen1, ...), all (every connected phone with a known "
               "profile), an adb serial, or serials separated by commas; several phones run at the same time.")
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help=DEVICE_HELP)]
PhonesOpt = Annotated[str | None, typer.Option("--device", "-d", help=DEVICE_HELP + " Default: this machine.")]
# eval's -d is --data (the option every eval needs); its --device has no short flag
EvalPhonesOpt = Annotated[str | None, typer.Option("--device", help=DEVICE_HELP + " Default: this machine. An "
                                                                                "interrupted run on a phone resumes.")]
AdbServerOpt = Annotated[str | None, typer.Option(
    "--adb-server", help="HOST:PORT of the adb server the phones are on (a lab's; default: $ADB_SERVER_SOCKET, "
                         "else adb's own local server).")]
PhoneDelegateOpt = Annotated[str | None, typer.Option("--delegate", help="; ".join(
    f"{t.name} ({t.harness.name}): {' | '.join(t.harness.delegates)}" for t in TARGETS.values() if t.harness)
    + " (the first is the default)")]
HarnessOpt = Annotated[Path | None, typer.Option(
    "--harness", help="The phone runner for this run (default: the one stored with `edgekit harness add`).")]
KeepOpt = Annotated[bool, typer.Option("--keep", help="Leave the files on the phone.")]


@app.command()
def verify(
    artifact_dir: Annotated[Path, typer.Argument(help="An artifact directory written by `edgekit export`.")],
    verify_images: VerifyImagesOpt = None,
    weights: Annotated[
        Path | None, typer.Option("--weights", "-w", help="The checkpoint, if it moved since the export "
                                                          "(checked against the sha256 the export recorded).")
    ] = None,
    allow_calibration_images: AllowCalibrationOpt = False,
    threads: ThreadsOpt = None,
    device: PhonesOpt = None,
    delegate: PhoneDelegateOpt = None,
    harness: HarnessOpt = None,
    adb_server: AdbServerOpt = None,
    keep: KeepOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-run an artifact's verification against the PyTorch model it came from: here, or with --device on
    phones (the phone's own outputs, recorded next to the host's)."""
    from edgekit.layer_debug import verify_with_layers
    from edgekit.verify import require_passed

    if device is None:
        _phone_flags_need_device(delegate=delegate, harness=harness, adb_server=adb_server, keep=keep)
        with _status(f"verifying {artifact_dir}"):
            result = _run(verify_with_layers, artifact_dir, verify_images, weights, allow_calibration_images, threads)
        _show(result, as_json, "verify_report")
        _run(require_passed, result["verification"])
        return
    from edgekit.ondevice import DeviceVerifyOptions, verify_on_device
    from edgekit.phones import device_verify_verdict

    opts = DeviceVerifyOptions(artifact_dir, device, delegate.lower() if delegate else None, harness, verify_images,
                               weights, allow_calibration_images, threads, adb_server, keep)
    with _status(f"verifying {artifact_dir} on {device}") as status:
        result = _run(verify_on_device, opts, lambda msg: status.update(msg))
    _show(result, as_json, "device_verify_report")
    _exit_with(device_verify_verdict(result))


@app.command()
def debug(
    artifact_dir: Annotated[Path, typer.Argument(help="An artifact directory written by `edgekit export`.")],
    images: Annotated[Path | None, typer.Option("--images", help="Your photos (a folder) instead of the built-in "
                                                                 "held-out set.")] = None,
    weights: Annotated[
        Path | None, typer.Option("--weights", "-w", help="The checkpoint, if it moved since the export "
                                                          "(checked against the sha256 the export recorded).")
    ] = None,
    allow_calibration_images: AllowCalibrationOpt = False,
    picture: Annotated[Path | None, typer.Option("--picture", help="Where to write the picture (default: "
                                                                   "edgekit-debug/ARTIFACT_NAME.png).")] = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where an artifact parts from PyTorch, layer by layer: each intermediate tensor against PyTorch's,
    the first below the target's bar, the largest drop, and why (fp16 range, int8 clipping and spread)."""
    from edgekit.layer_debug import DebugOptions, debug_artifact

    opts = DebugOptions(artifact_dir, images, weights, allow_calibration_images, threads, picture)
    with _status(f"debugging {artifact_dir}") as status:
        result = _run(debug_artifact, opts, lambda msg: status.update(msg))
    _show(result, as_json, "debug_report")


@app.command()
def predict(
    artifact_dir: Annotated[Path, typer.Argument(help="An artifact directory written by `edgekit export`.")],
    images: Annotated[list[Path], typer.Argument(help="Your photos (.jpg/.png): files, folders of them, or "
                                                      "glob patterns such as 'shots/*.jpg'.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the pictures.")] = Path(
        "edgekit-predictions"),
    top: Annotated[int, typer.Option("--top", help="Classes to show for a classifier.")] = 5,
    skip_unreadable: Annotated[bool, typer.Option("--skip-unreadable", help="Skip a photo that cannot be read "
                                                                              "(named in the report) instead of "
                                                                              "stopping.")] = False,
    hr: Annotated[Path | None, typer.Option("--hr", help="Super-resolution: the photos' high-resolution originals "
                                                         "(a file, or a folder matched by name), to print PSNR-Y.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run an artifact on your photos here: overlay and class-map PNGs, the top classes, or the x2 photo."""
    from edgekit.predict import PredictOptions
    from edgekit.predict import predict as run_predict

    with _status("predicting") as status:
        result = _run(run_predict, PredictOptions(artifact_dir, tuple(images), output, top, skip_unreadable, hr),
                      lambda msg: status.update(msg))
    _show(result, as_json, "predict_report")


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Argument(help="An artifact directory (scored with the PyTorch model it came from), "
                                              "or a variant name (its PyTorch model alone).")],
    data: DataOpt,
    data_format: FormatOpt = "auto",
    limit: Annotated[int | None, typer.Option("--limit", help="Score the first N images only (sorted).")] = None,
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="A variant's checkpoint; for an artifact, "
                                                                         "its checkpoint if it moved.")] = None,
    resolution: ResolutionOpt = None,
    max_drop: MaxDropOpt = None,
    save_predictions: Annotated[Path | None, typer.Option("--save-predictions", help="Write the predictions to "
                                                                                     "this new folder in the set's "
                                                                                     "own submission format.")
    ] = None,
    threads: ThreadsOpt = None,
    device: EvalPhonesOpt = None,
    delegate: PhoneDelegateOpt = None,
    harness: HarnessOpt = None,
    adb_server: AdbServerOpt = None,
    keep: KeepOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy on your labelled data (mIoU or top-1): the artifact, PyTorch, and the difference with a 95% interval."""
    from edgekit.eval import EvalOptions, evaluate, max_drop_failure

    opts = EvalOptions(model, data, data_format, limit, weights, resolution, threads, save_predictions)
    with _status("evaluating") as status:
        if device is None:
            _phone_flags_need_device(delegate=delegate, harness=harness, adb_server=adb_server, keep=keep)
            result = _run(evaluate, opts, lambda msg: status.update(msg))
        else:
            from edgekit.ondevice import PhoneOptions, evaluate_on_device

            phone = PhoneOptions(device, delegate.lower() if delegate else None, harness, adb_server, None, keep)
            result = _run(evaluate_on_device, opts, phone, lambda msg: status.update(msg))
    result["failure"] = max_drop_failure(result, max_drop)
    _show(result, as_json, "eval_report")
    if result["failure"]:
        typer.echo(f"error: {result['failure']}", err=True)
        raise typer.Exit(3)


@app.command("demo-data")
def demo_data(
    folder: Annotated[Path, typer.Argument(help="A new folder for the set.")],
    data_format: Annotated[str, typer.Option("--format", help="cityscapes | ade20k | imagenet | sr-benchmark | "
                                                              "div2k | hr-only (the layout).")] = "cityscapes",
) -> None:
    """Write a small DEMO labelled set in a dataset's real layout from the built-in photos, to try `edgekit
    eval` on (classes: a model's own predictions with noise, not a measure of accuracy; super-resolution: the
    verification photos, real but only 7)."""
    from edgekit.demo_data import make

    with _status(f"writing a {data_format} demo set"):
        made = _run(make, folder, data_format.lower())
    what = "photos as their own labels" if data_format.lower() in ("sr-benchmark", "div2k", "hr-only") else \
        "labels are a model's predictions, not annotations"
    typer.echo(f"{made}: a {data_format} DEMO set ({what}; see {made / 'README.txt'})")


@app.command("targets")
def targets_cmd(as_json: JsonOpt = False) -> None:
    """List the targets: model file, precisions, host runner, app platform, how each is profiled."""
    from edgekit.targets import describe_table

    rows = describe_table()
    _show(rows, as_json, "targets_table")


@app.command("package")
def package_cmd(
    artifacts: Annotated[list[Path], typer.Argument(help="Artifact directories written by `edgekit export`.")],
    platform: Annotated[str, typer.Option("--platform", help=" | ".join(sorted(
        {f"{t.packaging.platform} ({t.name})" for t in TARGETS.values() if t.packaging})))],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for bundles and zips.")] = Path(
        "edgekit-bundles"),
    allow_failed: Annotated[bool, typer.Option("--allow-failed", help="Package an artifact that FAILED its "
                                                                      "verification (the bundle says so).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make app-ready bundles: model, labels, model.json, a Kotlin/Swift snippet, and a zip of each."""
    from edgekit.package import PackageOptions, package

    with _status("packaging") as status:
        records = _run(package, PackageOptions(tuple(artifacts), platform.lower(), output, allow_failed),
                       lambda msg: status.update(msg))
    _show(records, as_json, "package_report")


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def sweep(
    variants: Annotated[str, typer.Option("--variants", help="Comma-separated, e.g. b0-seg,b1-cls,m0-cls.")],
    targets: Annotated[str, typer.Option("--targets", help="Comma-separated: " + ", ".join(TARGETS) + ".")] = DEFAULT_TARGET,
    precisions: Annotated[str, typer.Option("--precisions", help="Comma-separated, e.g. fp32,int8.")] = "fp32",
    resolutions: Annotated[
        str | None, typer.Option("--resolutions", help="Comma-separated HxW for every variant (default: each one's own).")
    ] = None,
    device: DeviceOpt = "host",
    runs: Annotated[int, typer.Option("--runs", help="Timed runs per cell.")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="Warmup runs per cell.")] = 3,
    threads: Annotated[int | None, typer.Option("--threads", help="Threads (default: the device profile's).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Artifacts folder; results.jsonl lives in it.")] = ARTIFACTS_DIR,
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG path (default: <output>/sweep.png).")] = None,
    eval_data: Annotated[Path | None, typer.Option("--eval-data", help="A labelled set: adds the task metric "
                                                                       "(mIoU or top-1, and its difference from "
                                                                       "PyTorch) for the variants of its "
                                                                       "dataset.")] = None,
    adb_server: AdbServerOpt = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="A Dask scheduler (tcp://HOST:8786): each cell's "
                                                                  "export and profile run on its `edgekit worker`s "
                                                                  "(--device is then a phone profile).")] = None,
    store: Annotated[Path | None, typer.Option("--store", help="With --cluster: a folder every machine shares, for "
                                                               "large artifacts (default: they travel through "
                                                               "Dask as bytes).")] = None,
    as_json: JsonOpt = False,
    target_options: dict | None = None,
) -> None:
    """Export and profile a grid; resumes where an interrupted sweep stopped; table and latency-vs-MACs PNG."""
    from edgekit.sweep import SweepOptions
    from edgekit.sweep import exit_code as sweep_exit_code
    from edgekit.sweep import sweep as run_sweep

    if cluster is not None:
        from edgekit.cluster import sweep_cluster as run_sweep

    opts = SweepOptions(_csv(variants), _csv(targets), _csv(precisions), _csv(resolutions) or (None,), device,
                        output, runs, warmup, threads, plot, target_options or {}, eval_data, adb_server, cluster, store)
    try:
        with _status("sweeping") as status:
            result = _run(run_sweep, opts, lambda msg: status.update(msg))
    except KeyboardInterrupt:
        typer.echo("interrupted: finished cells are kept; run the same command again to finish the rest", err=True)
        raise typer.Exit(130) from None
    _show(result, as_json, "sweep_table")
    code = sweep_exit_code(result)
    if code:
        typer.echo(f"error: {result['verdict']}", err=True)
        raise typer.Exit(code)


app.command("sweep")(_with_target_options(sweep, shared_from_command=True))


@app.command()
def worker(
    scheduler: Annotated[str, typer.Argument(help="The Dask scheduler, e.g. tcp://lab-1:8786 (`dask scheduler` "
                                                  "starts one).")],
    adb_server: AdbServerOpt = None,
    export_slots: Annotated[int, typer.Option("--export-slots", help="Exports this machine runs at once.")] = 1,
    memory_gib: Annotated[float | None, typer.Option("--memory-gib", help="Memory offered to exports (default: "
                                                                          "90% of this machine's).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="The worker's name on the dashboard.")] = None,
) -> None:
    """Serve a sweep's cells on this machine (`edgekit sweep --cluster`): its export slots and, refreshed as
    they come and go, the phones its adb server sees, by profile."""
    from edgekit.cluster import run_worker

    try:
        _run(run_worker, scheduler, adb_server, export_slots, memory_gib, name=name,
             progress=lambda msg: typer.echo(msg, err=True))
    except KeyboardInterrupt:
        typer.echo("worker stopped", err=True)
        raise typer.Exit(130) from None


def _choice(enum: type[E], value: str, option: str) -> E:
    try:
        return enum(value.lower())
    except ValueError:
        choices = ", ".join(e.value for e in enum)
        raise EdgekitError(f"{option} {value!r} is not one of: {choices}") from None


def main() -> None:
    _state["entry"] = True
    crashed = True
    try:
        app()
        crashed = False
    except SystemExit as e:
        crashed = e.code not in (None, 0, 1, 3, 130)
        raise
    finally:
        if _state["capture"] is not None:
            _state["capture"].finish(crashed)


harness_app = typer.Typer(help="The benchmark programs pushed to phones (given once; never downloaded).",
                          no_args_is_help=True)
app.add_typer(harness_app, name="harness")


@harness_app.command("add")
def harness_add(
    path: Annotated[Path, typer.Argument(help="The program for Android arm64 (e.g. LiteRT's benchmark_model).")],
    kind: Annotated[str, typer.Option("--kind", help="Which program: " + " | ".join(
        f"{name} ({', '.join(t.name for t in TARGETS.values() if t.harness and t.harness.name == name)})"
        for name in harnesses()) + ".")] = next(iter(harnesses())),
    lib: Annotated[list[Path] | None, typer.Option("--lib", help="A library it needs on the phone (repeat), e.g. "
                                                                 "the QNN HTP libraries for onnxruntime_perf_test.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a benchmark program (and the libraries it needs) in edgekit's cache, with their sha256."""
    from edgekit.profile import add_harness

    record = _run(add_harness, path, kind.lower(), tuple(lib or ()))
    _show(record, as_json, "harness_report")


@app.command()
def devices(adb_server: AdbServerOpt = None, as_json: JsonOpt = False) -> None:
    """List the phones adb sees: serial, model, SoC, matched device profile, state."""
    from edgekit.profile import list_devices

    rows = _run(list_devices, adb_server)
    _show(rows, as_json, "devices_table")


@app.command()
def profile(
    artifacts: Annotated[
        list[Path] | None, typer.Argument(help="Artifact directories, or folders of them (default: all under "
                                               f"./{ARTIFACTS_DIR}).")
    ] = None,
    device: DeviceOpt = "host",
    threads: Annotated[int | None, typer.Option("--threads", help="Threads (default: the profile's).")] = None,
    delegate: PhoneDelegateOpt = None,
    runs: Annotated[int, typer.Option("--runs", help="Timed runs.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", help="Warmup runs.")] = 5,
    op_profile: Annotated[bool, typer.Option("--op-profile", help="Per-op profile (benchmark_model on a phone).")] = False,
    keep: KeepOpt = False,
    harness: HarnessOpt = None,
    adb_server: AdbServerOpt = None,
    results: Annotated[Path | None, typer.Option("--results", help="JSONL file results are appended to "
                                                                   "(default: results.jsonl next to the artifacts).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Measure a model file changed since export (recorded "
                                                        "under its real sha256).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure artifacts on a phone over adb (or on this machine) next to the paper's figure."""
    from edgekit.phones import profile_verdict
    from edgekit.profile import ProfileOptions
    from edgekit.profile import profile as run_profile

    opts = ProfileOptions(tuple(artifacts or ()), device, threads, delegate.lower() if delegate else None, runs,
                          warmup, op_profile, keep, harness, results, force=force, adb_server=adb_server)
    with _status("profiling") as status:
        records = _run(run_profile, opts, lambda msg: status.update(msg))
    _show(records, as_json, "profile_table")
    _exit_with(profile_verdict(records))


if __name__ == "__main__":
    main()
