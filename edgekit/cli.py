"""The `edgekit` command. Each command parses options and calls one library function.

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
from edgekit.errors import EdgekitError

app = typer.Typer(
    name="edgekit",
    help="EfficientViT from PyTorch to verified TFLite/CoreML artifacts and on-device latencies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}
T = TypeVar("T")
E = TypeVar("E", bound=Enum)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
VariantArg = Annotated[str, typer.Argument(help="Variant name, e.g. b0-seg, b1-cls, m0-cls.")]
TargetOpt = Annotated[str, typer.Option("--target", "-t", help="tflite | onnx | coreml")]
UpsampleOpt = Annotated[
    str | None, typer.Option("--upsample", help="exact (default for tflite/coreml) | bilinear | bicubic (onnx only)")
]
ResolutionOpt = Annotated[
    str | None, typer.Option("--resolution", "-r", help="Input HxW (or one side for square); multiples of 32.")
]
WeightsOpt = Annotated[
    Path | None, typer.Option("--weights", "-w", help="Official checkpoint (.pt/.pth), loaded strictly, weights-only.")
]


def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a library function; an EdgekitError becomes one line on stderr and exit code 1."""
    try:
        return fn(*args, **kwargs)
    except EdgekitError as e:
        if _state["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None


def _status(message: str):
    """A spinner on stderr while long work runs (stdout stays clean for --json)."""
    from rich.console import Console

    return Console(stderr=True).status(message)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    _state["debug"] = debug or os.environ.get("EDGEKIT_DEBUG") == "1"


@app.command()
def variants(as_json: JsonOpt = False) -> None:
    """List the model zoo: name, task, dataset, default resolution, the papers' params and MACs."""
    from edgekit.info import list_variants

    rows = _run(list_variants)
    if as_json:
        return _print_json(rows)
    from edgekit.report import variants_table

    variants_table(rows)


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
    if as_json:
        return _print_json(data)
    from edgekit.report import info_table

    info_table(data)


@app.command()
def inspect(
    variant: VariantArg,
    target: TargetOpt = "tflite",
    resolution: ResolutionOpt = None,
    weights: WeightsOpt = None,
    upsample: UpsampleOpt = None,
    precision: Annotated[
        str | None, typer.Option("--precision", "-p", help="the artifact precision to plan for (default: target's)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the deploy form for a target: op histogram, rewrites applied and their measured effect."""
    from edgekit.deploy import Target, Upsample
    from edgekit.inspect import inspect_variant

    tgt = _run(_choice, Target, target, "--target")
    up = _run(_choice, Upsample, upsample, "--upsample") if upsample else None
    with _status(f"building and measuring the {tgt.value} deploy form of {variant}"):
        data = _run(inspect_variant, variant, tgt, resolution, weights, up, precision)
    if as_json:
        return _print_json(data)
    from edgekit.report import inspect_tables

    inspect_tables(data)


@app.command()
def export(
    variant: VariantArg,
    target: TargetOpt = "tflite",
    precision: Annotated[
        str | None,
        typer.Option("--precision", "-p", help="tflite: fp32 | fp16 | int8-dynamic | int8; coreml: fp16 | fp32 | int8-weights | int8 (--ios 17)"),
    ] = None,
    ios: Annotated[int, typer.Option("--ios", help="CoreML minimum iOS (16, 17, 18).")] = 16,
    input_kind: Annotated[str, typer.Option("--input", help="CoreML input: image (CVPixelBuffer) | tensor")] = "image",
    resolution: ResolutionOpt = None,
    weights: WeightsOpt = None,
    layout: Annotated[str, typer.Option("--layout", help="TFLite input layout: nhwc (camera) | nchw")] = "nhwc",
    io: Annotated[str, typer.Option("--io", help="float | int8 (integer input/output; --precision int8)")] = "float",
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="Folder of .jpg/.png or an .npy batch (int8).")
    ] = None,
    num_calibration: Annotated[int, typer.Option("--num-calibration", help="Calibration samples (int8).")] = 8,
    upsample: UpsampleOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for artifact directories.")] = Path(
        "edgekit-artifacts"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Export a variant as a verified artifact directory (model, labels, edgekit.json)."""
    from edgekit.deploy import Target, Upsample
    from edgekit.export import ExportOptions
    from edgekit.export import export as run_export

    tgt = _run(_choice, Target, target, "--target")
    opts = ExportOptions(
        variant=variant,
        target=tgt,
        precision=(precision or ("fp16" if tgt is Target.COREML else "fp32")).lower(),
        ios=ios,
        input_kind=input_kind.lower(),
        resolution=resolution,
        weights=weights,
        layout=layout.lower(),
        io=io.lower(),
        calibration=calibration,
        num_calibration=num_calibration,
        upsample=_run(_choice, Upsample, upsample, "--upsample") if upsample else None,
        output=output,
    )
    with _status("exporting") as status:
        manifest = _run(run_export, opts, lambda msg: status.update(msg))
    if as_json:
        return _print_json(manifest)
    from edgekit.report import export_report

    export_report(manifest)
    _exit_on_failed_verification(manifest["verification"])


@app.command()
def verify(
    artifact_dir: Annotated[Path, typer.Argument(help="An artifact directory written by `edgekit export`.")],
    as_json: JsonOpt = False,
) -> None:
    """Re-run an artifact's verification against the PyTorch model it came from."""
    from edgekit.verify import verify_artifact

    with _status(f"verifying {artifact_dir}"):
        result = _run(verify_artifact, artifact_dir)
    if as_json:
        _print_json(result)
    else:
        from edgekit.report import verification_table

        verification_table(result["verification"], result["precision"], result["random_weights"])
    _exit_on_failed_verification(result["verification"])


@app.command("package")
def package_cmd(
    artifacts: Annotated[list[Path], typer.Argument(help="Artifact directories written by `edgekit export`.")],
    platform: Annotated[str, typer.Option("--platform", help="android (TFLite artifacts) | ios (CoreML artifacts)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for bundles and zips.")] = Path(
        "edgekit-bundles"),
    as_json: JsonOpt = False,
) -> None:
    """Make app-ready bundles: model, labels, model.json, a Kotlin/Swift snippet, and a zip of each."""
    from edgekit.bundle import PackageOptions, package

    with _status("packaging") as status:
        records = _run(package, PackageOptions(tuple(artifacts), platform.lower(), output),
                       lambda msg: status.update(msg))
    if as_json:
        return _print_json(records)
    from edgekit.report import package_report

    package_report(records)


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


@app.command()
def sweep(
    variants: Annotated[str, typer.Option("--variants", help="Comma-separated, e.g. b0-seg,b1-cls,m0-cls.")],
    targets: Annotated[str, typer.Option("--targets", help="Comma-separated: tflite, onnx, coreml.")] = "tflite",
    precisions: Annotated[str, typer.Option("--precisions", help="Comma-separated, e.g. fp32,int8.")] = "fp32",
    resolutions: Annotated[
        str | None, typer.Option("--resolutions", help="Comma-separated HxW for every variant (default: each one's own).")
    ] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="host, a profile (s8gen1, ...) or an adb serial.")] = "host",
    runs: Annotated[int, typer.Option("--runs", help="Timed runs per cell.")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="Warmup runs per cell.")] = 3,
    threads: Annotated[int | None, typer.Option("--threads", help="Threads (default: the device profile's).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Artifacts folder; results.jsonl lives in it.")] = Path(
        "edgekit-artifacts"),
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG path (default: <output>/sweep.png).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export and profile a grid; resumes where an interrupted sweep stopped; table and latency-vs-MACs PNG."""
    from edgekit.sweep import SweepOptions
    from edgekit.sweep import sweep as run_sweep

    opts = SweepOptions(_csv(variants), _csv(targets), _csv(precisions), _csv(resolutions) or (None,), device,
                        output, runs, warmup, threads, plot)
    try:
        with _status("sweeping") as status:
            result = _run(run_sweep, opts, lambda msg: status.update(msg))
    except KeyboardInterrupt:
        typer.echo("interrupted: finished cells are kept; run the same command again to finish the rest", err=True)
        raise typer.Exit(130) from None
    if as_json:
        return _print_json(result)
    from edgekit.report import sweep_table

    sweep_table(result)


def _exit_on_failed_verification(verification: dict) -> None:
    if not verification["passed"]:
        typer.echo("error: verification failed: the artifact is outside its tolerance (see the table)", err=True)
        raise typer.Exit(3)


def _choice(enum: type[E], value: str, option: str) -> E:
    try:
        return enum(value.lower())
    except ValueError:
        choices = ", ".join(e.value for e in enum)
        raise EdgekitError(f"{option} {value!r} is not one of: {choices}") from None


def main() -> None:
    app()


harness_app = typer.Typer(help="The benchmark_model binary pushed to phones (given once; never downloaded).",
                          no_args_is_help=True)
app.add_typer(harness_app, name="harness")


@harness_app.command("add")
def harness_add(
    path: Annotated[Path, typer.Argument(help="LiteRT's benchmark_model for Android arm64.")],
    as_json: JsonOpt = False,
) -> None:
    """Store a benchmark_model binary in edgekit's cache, with its sha256."""
    from android_harness.profiler import add_harness

    record = _run(add_harness, path)
    if as_json:
        return _print_json(record)
    typer.echo(f"harness stored: {record['path']} ({record['kind']}{', ' + record['arch'] if record['arch'] else ''}, "
               f"sha256 {record['sha256'][:12]}...)")


@app.command()
def devices(as_json: JsonOpt = False) -> None:
    """List the phones adb sees: serial, model, SoC, matched device profile, state."""
    from android_harness.profiler import list_devices

    rows = _run(list_devices)
    if as_json:
        return _print_json(rows)
    from edgekit.report import devices_table

    devices_table(rows)


@app.command()
def profile(
    artifacts: Annotated[
        list[Path] | None, typer.Argument(help="Artifact directories (default: all under ./edgekit-artifacts).")
    ] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="A profile (s8gen1, ...), an adb serial, or host.")] = "host",
    threads: Annotated[int | None, typer.Option("--threads", help="Threads (default: the profile's).")] = None,
    delegate: Annotated[str, typer.Option("--delegate", help="cpu (XNNPACK) | gpu | nnapi | qnn")] = "cpu",
    runs: Annotated[int, typer.Option("--runs", help="Timed runs.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", help="Warmup runs.")] = 5,
    op_profile: Annotated[bool, typer.Option("--op-profile", help="Per-op profile (benchmark_model on a phone).")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the files on the phone.")] = False,
    harness: Annotated[Path | None, typer.Option("--harness", help="benchmark_model binary for this run.")] = None,
    results: Annotated[Path | None, typer.Option("--results", help="JSONL file results are appended to.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure artifacts on a phone over adb (or on this machine) next to the paper's figure."""
    from android_harness.profiler import ProfileOptions
    from android_harness.profiler import profile as run_profile

    opts = ProfileOptions(tuple(artifacts or ()), device, threads, delegate.lower(), runs, warmup, op_profile, keep,
                          harness, results)
    with _status("profiling") as status:
        records = _run(run_profile, opts, lambda msg: status.update(msg))
    if as_json:
        return _print_json(records)
    from edgekit.report import profile_table

    profile_table(records)


if __name__ == "__main__":
    main()
