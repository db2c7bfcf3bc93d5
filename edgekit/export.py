"""`edgekit export`: variant -> torch model -> deploy form -> artifact directory -> verification.

Every option is checked before any work (the target's own options by its table entry). The
artifact directory `<output>/<variant>-<HxW>-<target>-<precision>/` is built in a temporary sibling
and renamed into place only after the model converted and its verification ran, so a failed
export leaves nothing behind. An artifact that converted but missed its tolerance is kept (its
manifest says FAILED); the CLI exits 3 for it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.artifacts import ARTIFACTS_DIR, atomic_directory, check_writable, sha256, size_bytes, tool_versions
from edgekit.deploy import REWRITES, Upsample, make_deploy_form
from edgekit.errors import EdgekitError
from edgekit.manifest import SCHEMA, Manifest, write_manifest
from edgekit.registry import Size, Variant, get_variant, parse_resolution
from edgekit.targets import DEFAULT_TARGET

DEFAULT_OUTPUT = ARTIFACTS_DIR
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    variant: str
    target: str = DEFAULT_TARGET
    precision: str | None = None  # None: the target's default
    resolution: str | None = None
    weights: Path | None = None
    # the target's options: its options dataclass, or the flag values given (field name -> value)
    target_options: Any = field(default_factory=dict)
    calibration: Path | None = None
    num_calibration: int = 8
    upsample: Upsample | None = None
    output: Path = DEFAULT_OUTPUT
    verify_images: Path | None = None  # a folder of the user's photos (default: the built-in set)
    allow_calibration_images: bool = False  # verify on a photo that was also used for calibration
    overwrite: bool = False  # replace an artifact made from other weights or options
    threads: int | None = None  # PyTorch's and the host runner's threads (None: PyTorch's default; runner 2)
    eval_data: Path | None = None  # a labelled set: after verification, score the task metric (edgekit.eval)
    max_drop: float | None = None  # with eval_data: FAILED when the artifact loses more points than this
    stand_in: str = "plain"  # without weights: "plain" or "trained-like" random weights (edgekit/models/init.py)


@dataclass(frozen=True)
class ExportPlan:
    """The options, checked and resolved, before any work."""

    variant: Variant
    size: Size
    spec: Any  # targets.base.TargetSpec
    precision: str
    options: Any  # the target's options dataclass
    calibration: Any  # calibration.sources.CalibrationSet | None
    verification: Any  # edgekit.verify.VerificationSet
    rewrites: tuple[str, ...] = ()  # the deploy passes, in order (edgekit.deploy.deploy_rewrites)
    eval_data: Any = None  # edgekit.datasets.Dataset | None


def plan_export(opts: ExportOptions) -> ExportPlan:
    """Every check that can fail, before anything is built or written."""
    from edgekit.reference import STAND_INS
    from edgekit.targets import TARGETS, get_target
    from edgekit.targets.base import parse_options
    from edgekit.threads import check_threads
    from edgekit.verify import verification_set

    check_threads(opts.threads)
    if opts.stand_in not in STAND_INS:
        raise EdgekitError(f"--stand-in {opts.stand_in!r}: choose {' or '.join(STAND_INS)}")
    if opts.weights is not None and opts.stand_in != "plain":
        raise EdgekitError("--stand-in is for running without a checkpoint: drop it, or drop --weights")
    variant = get_variant(opts.variant)
    size = parse_resolution(opts.resolution, variant)
    spec = get_target(opts.target)
    precision = spec.check_precision((opts.precision or spec.default_precision).lower())
    options = opts.target_options if is_dataclass(opts.target_options) else \
        parse_options(spec, opts.target_options or {}, TARGETS)
    if spec.validate is not None:
        spec.validate(precision, options)
    from edgekit.deploy import deploy_rewrites

    rewrites = tuple(deploy_rewrites(spec, precision, opts.upsample, options))  # refuses an upsample it cannot take
    calib = None
    if spec.needs_calibration(precision):
        from edgekit.calibration.sources import calibration_set

        calib = calibration_set(variant, size, opts.calibration, opts.num_calibration)
    elif opts.calibration is not None:
        calibrated = [p for p in spec.precisions if spec.needs_calibration(p)]
        raise EdgekitError(f"--calibration is used only by calibrated precisions ({', '.join(calibrated) or 'none'} "
                           f"for {spec.name}); {precision} is not calibrated")
    verification = verification_set(variant, opts.verify_images, calib.images if calib else (),
                                     opts.allow_calibration_images)
    if calib is not None and spec.check_calibration is not None:
        spec.check_calibration(precision, options, calib)
    return ExportPlan(variant, size, spec, precision, options, calib, verification, rewrites,
                      _eval_data(opts, variant))


def _eval_data(opts: ExportOptions, variant: Variant):
    if opts.eval_data is None:
        if opts.max_drop is not None:
            raise EdgekitError("--max-drop needs --eval-data (the labelled set the metric is measured on)")
        return None
    if opts.max_drop is not None and opts.max_drop < 0:
        raise EdgekitError(f"--max-drop must be 0 or more points (got {opts.max_drop:g})")
    from edgekit.datasets import check_matches, open_dataset

    data = open_dataset(opts.eval_data, "auto", variant.num_classes)
    check_matches(data, variant)
    return data


def artifact_name(variant: Variant, size: Size, target: str, precision: str) -> str:
    return f"{variant.name}-{size[0]}x{size[1]}-{target}-{precision}"


def _inputs(weights_sha: str | None, target_options: dict, rewrites: list[str], calibration: dict | None,
            stand_in: str = "plain") -> dict:
    """What makes two artifacts of the same name different models."""
    calib = None if calibration is None else {
        "source": calibration["source"], "samples": calibration["samples"],
        "images": [i.get("rgb_sha256") or i["name"] for i in calibration["images"]]}
    weights = weights_sha or ("random stand-in" if stand_in == "plain" else f"random stand-in ({stand_in})")
    return {"weights": weights, "options": target_options, "rewrites": rewrites, "calibration": calib}


def _check_replace(final: Path, plan: ExportPlan, opts: ExportOptions) -> str | None:
    """Before any work: refuse to replace an artifact made from other inputs (a trained model is
    never silently replaced by a stand-in) unless --overwrite; say when one is replaced."""
    from edgekit.artifacts import sha256
    from edgekit.checkpoints import weights_file
    from edgekit.errors import ManifestError
    from edgekit.manifest import MANIFEST, read_manifest
    from edgekit.reference import stand_in_kind
    from edgekit.targets.base import options_dict

    if not final.exists():
        return None
    if opts.overwrite:
        return f"replaced the existing {final.name} (--overwrite)"
    try:
        old = read_manifest(final)
    except ManifestError:
        if (final / MANIFEST).exists() or any(final.iterdir()):
            raise EdgekitError(f"{final} exists and is not an artifact this edgekit can read: pass --overwrite to "
                               "replace it, or --output another folder") from None
        return None
    new_calib = plan.calibration.record() if plan.calibration is not None else None
    new = _inputs(sha256(weights_file(opts.weights)[0]) if opts.weights else None, options_dict(plan.options),
                  list(plan.rewrites), new_calib, opts.stand_in)
    was = _inputs(old.source.get("sha256"), old.target_options, [r["name"] for r in old.rewrites if "chosen_by" not in r],
                  old.calibration,
                  stand_in_kind(old.source))
    differ = [k for k in new if new[k] != was[k]]
    if differ:
        raise EdgekitError(f"{final} already holds an artifact made from other {', '.join(differ)} "
                           f"(weights: {was['weights'][:16]}): pass --overwrite to replace it, or --output another "
                           "folder")
    return f"replaced the existing {final.name} (made from the same inputs)"


def export(opts: ExportOptions, progress: Progress = lambda _msg: None) -> Manifest:
    from edgekit.threads import torch_threads

    plan = plan_export(opts)
    with torch_threads(opts.threads):
        return _export(opts, plan, progress)


def _export(opts: ExportOptions, plan: ExportPlan, progress: Progress) -> Manifest:
    from edgekit.reference import source_model
    from edgekit.runtime import DEFAULT_THREADS
    from edgekit.targets.base import ConvertJob
    from edgekit.verify import verify_model

    variant, size, spec = plan.variant, plan.size, plan.spec
    final = Path(opts.output) / artifact_name(variant, size, spec.name, plan.precision)
    replaced = _check_replace(final, plan, opts)
    check_writable(Path(opts.output), create=False)  # before the model is built; created after it loads
    started = time.perf_counter()
    progress(f"building {variant.name} at {size[0]}x{size[1]}")
    model, source = source_model(variant, size, opts.weights, opts.stand_in)  # a checkpoint that does not fit stops here
    check_writable(Path(opts.output))  # last check: it creates the output folder
    calib_data = plan.calibration.data if plan.calibration is not None else None
    form = make_deploy_form(model, size, spec, plan.precision, opts.upsample, calibration=calib_data,
                            rewrites=list(plan.rewrites))
    with atomic_directory(final) as tmp, tempfile.TemporaryDirectory(prefix="edgekit-work-") as work:
        converted = spec.convert(ConvertJob(variant, size, plan.precision, plan.options, form.model, calib_data,
                                            Path(work), tmp, progress,
                                            plan.calibration.originals if plan.calibration is not None else 0,
                                            _task_judge(plan, opts)))
        manifest = _manifest(plan, form, source, converted)
        _write_labels(variant, tmp)
        progress(f"verifying against PyTorch on {len(plan.verification.paths)} held-out photos")
        manifest.verification = verify_model(converted.model_file, manifest, model, plan.verification,
                                             converted.torch_model, threads=opts.threads or DEFAULT_THREADS)
        if plan.eval_data is not None:
            _evaluate(manifest, tmp, final, plan, opts, model, progress)
        if not manifest.verification["passed"]:
            from edgekit.layer_debug import failure_layers

            write_manifest(tmp, manifest)  # the debugger reads the artifact as written
            manifest.verification["layers"] = failure_layers(tmp, final, opts.threads, progress, opts.verify_images,
                                                             opts.weights, opts.allow_calibration_images)
        manifest.export_seconds = round(time.perf_counter() - started, 1)
        write_manifest(tmp, manifest)
    manifest.artifact_dir = str(final)
    manifest.replaced = replaced
    return manifest


def _task_judge(plan: ExportPlan, opts: ExportOptions):
    """--eval-data with --max-drop on a calibrated precision: the labelled set judges the int8 recipe."""
    if plan.eval_data is None or opts.max_drop is None or plan.calibration is None:
        return None
    from edgekit.accuracy import METRICS
    from edgekit.eval import task_scorer
    from edgekit.int8.search import MetricGoal, TaskJudge

    return TaskJudge(MetricGoal(METRICS[plan.variant.task], opts.max_drop, len(plan.eval_data.samples)),
                     task_scorer(plan.variant, plan.size, plan.eval_data))


def _evaluate(manifest: Manifest, tmp: Path, final: Path, plan: ExportPlan, opts: ExportOptions, model,
              progress: Progress) -> None:
    """The task metric against PyTorch on the user's labelled set, recorded in the manifest; more than
    --max-drop lost fails the artifact as a verification failure does (kept, marked FAILED, exit 3)."""
    from edgekit.eval import evaluate_artifact, max_drop_failure

    manifest.artifact_dir = str(tmp)
    result = evaluate_artifact(manifest, plan.eval_data, progress, threads=opts.threads, reference=model)
    result["artifact_dir"] = str(final)
    result["max_drop"] = opts.max_drop
    result["failure"] = max_drop_failure(result, opts.max_drop)
    manifest.evaluation = result
    if result["failure"]:
        manifest.verification["failures"].append(f"task metric: {result['failure']}")
        manifest.verification["passed"] = False


def _write_labels(variant: Variant, out: Path) -> None:
    from edgekit.labels import class_names

    (out / "labels.txt").write_text("\n".join(class_names(variant)) + "\n")


def _manifest(plan: ExportPlan, form, source: dict, converted) -> Manifest:
    from edgekit.info import variant_summary
    from edgekit.targets.base import options_dict

    variant, spec = plan.variant, plan.spec
    summary = variant_summary(variant, plan.size)
    return Manifest(
        schema=SCHEMA,
        edgekit_version=__version__,
        **summary,
        target=spec.name,
        precision=plan.precision,
        target_options=options_dict(plan.options),
        model_file=converted.model_file.name,
        file_bytes=size_bytes(converted.model_file),
        sha256=sha256(converted.model_file),
        io=converted.io,
        normalization={"color": "RGB", "scale": 1 / 255, "mean": list(variant.mean), "std": list(variant.std)},
        output_semantics=variant.output_semantics,
        output_stride=variant.output_stride,
        labels="labels.txt",
        rewrites=[{"name": r.name, "exact": r.exact, "summary": r.summary} for r in form.rewrites]
        + [{"name": r.name, "exact": r.exact, "summary": r.summary, "chosen_by": "the int8 recipe search"}
           for r in (REWRITES[n] for n in converted.searched_rewrites)],
        source=source,
        calibration=plan.calibration.record() if plan.calibration is not None else None,
        ops=converted.ops,
        target_info=converted.target_info,
        tools=tool_versions(spec.tools),
        verification={"passed": False},  # replaced by the verification before the manifest is written
    )

