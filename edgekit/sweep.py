"""`edgekit sweep`: export and profile a grid of variants x targets x precisions x resolutions.

A cell is done when results.jsonl holds a measurement of exactly its artifact (same sha256) on the
same device; an artifact already on disk with an intact model file is reused, not re-exported. So
an interrupted sweep, run again with the same arguments, finishes the rest and redoes nothing.
Each cell is exported with the target options given (each to the targets that take it) and, on a
phone, with that phone's profile in every option that names the phones an artifact is built for
(the shared --device: QNN compiles for the phone's Hexagon arch); an artifact on disk is reused only
if it was exported with exactly those options.
Failed cells are retried on the next run (a phone may have been unplugged). Artifacts and results
are written atomically, so an interruption at any moment leaves no half cell behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.artifacts import ARTIFACTS_DIR
from edgekit.errors import EdgekitError, first_line
from edgekit.targets import DEFAULT_TARGET

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SweepOptions:
    variants: tuple[str, ...]
    targets: tuple[str, ...] = (DEFAULT_TARGET,)
    precisions: tuple[str, ...] = ("fp32",)
    resolutions: tuple[str | None, ...] = (None,)  # None: each variant's default
    device: str = "host"
    output: Path = ARTIFACTS_DIR
    runs: int = 20
    warmup: int = 3
    threads: int | None = None
    plot: Path | None = None  # default: <output>/sweep.png
    target_options: dict = field(default_factory=dict)  # option field name -> value, as the CLI collects them
    eval_data: Path | None = None  # a labelled set: a metric column for the variants of its dataset
    adb_server: str | None = None  # HOST:PORT of the phones' adb server (default: ADB_SERVER_SOCKET or adb's own)
    cluster: str | None = None  # a Dask scheduler (tcp://HOST:8786): exports and profiles on its workers
    store: Path | None = None  # with cluster: a shared folder artifacts travel through (default: as bytes via Dask)


@dataclass(frozen=True)
class Cell:
    variant: str  # the registry name
    resolution: tuple[int, int]
    target: str
    precision: str

    @property
    def label(self) -> str:
        return f"{self.variant} {self.resolution[0]}x{self.resolution[1]} {self.target} {self.precision}"


def plan(opts: SweepOptions) -> list[Cell]:
    """Every cell of the grid, validated before any work (an unknown name fails the whole sweep)."""
    from edgekit.registry import get_variant, parse_resolution
    from edgekit.targets import get_target
    from edgekit.targets.base import option_fields

    if not opts.variants:
        raise EdgekitError("--variants is empty: name at least one (edgekit variants lists them)")
    specs = [get_target(t, "--targets") for t in opts.targets]
    targets = [s.name for s in specs]
    # a precision no chosen target has is a typo: refuse it now, not cell by cell an hour later (one
    # that only some targets have fails in the others' cells, with the reason in the table)
    for precision in opts.precisions:
        if not any(precision.lower() in s.precisions for s in specs):
            known = sorted({p for s in specs for p in s.precisions})
            raise EdgekitError(f"--precisions {precision!r} is not a precision of {', '.join(targets)} "
                               f"(one of: {', '.join(known)})")
    given = {k: v for k, v in opts.target_options.items() if v is not None}
    for name in given:
        if not any(name in {f.name for f in option_fields(s.options)} for s in specs):
            raise EdgekitError(f"--{name.replace('_', '-')} applies to none of --targets {','.join(targets)}")
    cells = []
    for name, res, target, precision in itertools.product(opts.variants, opts.resolutions, targets, opts.precisions):
        variant = get_variant(name)
        cells.append(Cell(variant.name, parse_resolution(res, variant), target, precision.lower()))
    return list(dict.fromkeys(cells))  # the same cell asked twice is done once


def _device_key(serials: list[str | None]):
    """What identifies 'the same device' in a result record: the host, or one of the sweep's phones."""
    if serials == [None]:
        return lambda rec: rec["device"]["profile"] == "host"
    return lambda rec: rec["device"]["serial"] in serials


def cell_options(spec, given: dict, device_profile: str):
    """The target's options dataclass for a cell: the given options it takes, and on a phone that
    phone's profile in its shared --device fields (unless the user named phones)."""
    from edgekit.targets import TARGETS
    from edgekit.targets.base import device_fields, option_fields, parse_options

    own = {f.name for f in option_fields(spec.options)}
    values = {k: v for k, v in given.items() if k in own and v is not None}
    if device_profile != "host":
        for name in device_fields(spec):
            values.setdefault(name, device_profile)
    return parse_options(spec, values, TARGETS)


def _existing_artifact(folder: Path, options):
    """The manifest of an artifact already on disk, exported with `options`, whose model file is
    intact, else None."""
    from edgekit.artifacts import sha256
    from edgekit.errors import ManifestError
    from edgekit.manifest import MANIFEST, read_manifest
    from edgekit.targets.base import options_dict

    if not (folder / MANIFEST).is_file():
        return None
    try:
        manifest = read_manifest(folder)
    except ManifestError:
        return None  # an old or damaged artifact: export it again
    model = manifest.model_path
    if not model.exists() or sha256(model) != manifest.sha256:
        return None
    if manifest.target_options != options_dict(options):
        return None  # exported for another phone or with other options: the export says what to do
    return manifest


def _export(cell: Cell, opts: SweepOptions, device_profile: str, progress: Progress, data=None):
    """(manifest, reused); a new export of a variant of `data`'s dataset records its task metric."""
    from edgekit.export import ExportOptions, artifact_name, export
    from edgekit.registry import get_variant
    from edgekit.targets import get_target

    options = cell_options(get_target(cell.target), opts.target_options, device_profile)
    folder = Path(opts.output) / artifact_name(get_variant(cell.variant), cell.resolution, cell.target,
                                               cell.precision)
    manifest = _existing_artifact(folder, options)
    if manifest is not None:
        return manifest, True
    res = f"{cell.resolution[0]}x{cell.resolution[1]}"
    eval_data = opts.eval_data if data is not None and data.format == get_variant(cell.variant).dataset else None
    return export(ExportOptions(cell.variant, cell.target, cell.precision, res, target_options=options,
                                output=Path(opts.output), eval_data=eval_data), progress), False


def _macs(variant: str, resolution: tuple[int, int], cache: dict) -> float:
    from edgekit.complexity import measure
    from edgekit.registry import get_variant

    key = (variant, resolution)
    if key not in cache:
        cache[key] = measure(get_variant(variant), resolution).macs / 1e9
    return cache[key]


def _row(cell: Cell, gmacs: float) -> dict:
    return {"cell": cell.label, "variant": cell.variant, "resolution": list(cell.resolution), "target": cell.target,
            "precision": cell.precision, "gmacs": gmacs, "status": None, "error": None, "note": None, "artifact": None,
            "size_mb": None, "sqnr_db_min": None, "sqnr_db_median": None, "agreement": None, "agreement_kind": None,
            "verified": None,
            "random_weights": None, "latency_ms": None, "phones": None, "paper_ms": None, "paper_device": None,
            "exported": None, "profiled": None, "metric": None, "metric_value": None, "metric_delta": None,
            "metric_ci95": None}


def _fill_from_manifest(row: dict, manifest) -> None:
    v = manifest.verification
    row.update(artifact=manifest.artifact_dir, size_mb=manifest.file_bytes / 1e6, sqnr_db_min=v.get("sqnr_db_min"),
               sqnr_db_median=v.get("sqnr_db_median"), agreement=v.get("agreement"),
               agreement_kind=v.get("agreement_kind"), verified=v["passed"], random_weights=manifest.random_weights)
    search = (manifest.target_info.get("int8") or {}).get("search")
    if search:  # an int8 cell whose recipe is not worth shipping says so, as its export did
        from edgekit.int8.search import worth_it_line

        row["note"] = worth_it_line(search)


def _fill_from_record(row: dict, records: list[dict]) -> None:
    """The cell's latency: its one phone's median, or with several phones the median of theirs, each
    phone's own kept in `phones`."""
    import statistics

    paper = records[0].get("paper") or {}
    each = {r["device"]["serial"] or "host": r.get("median_ms") or r.get("mean_ms") for r in records}
    row.update(latency_ms=statistics.median(each.values()), paper_ms=paper.get("ms"), paper_device=paper.get("device"),
               phones=each if len(each) > 1 else None)


def _fill_metric(row: dict, manifest, data, opts: SweepOptions, progress: Progress) -> None:
    """The task metric of the cell's artifact: the one its export recorded on the same set (same
    files, same sizes and times), else measured now (PyTorch's side comes from the eval cache)."""
    from edgekit.eval import evaluate_artifact

    result = manifest.evaluation
    if not result or result.get("fingerprint") != data.fingerprint():
        result = evaluate_artifact(manifest, data, progress, threads=opts.threads)
    row.update(metric=result["metric"], metric_value=result["artifact"]["value"], metric_delta=result["delta"],
               metric_ci95=result["delta_ci95"])


def _run_cell(cell: Cell, row: dict, opts: SweepOptions, device_profile: str, serials: list, results_path: Path,
              done, progress: Progress, data=None) -> None:
    """Fill `row` for one cell: export (or reuse), then profile unless already measured."""
    from edgekit.phones import failed_phones, measured
    from edgekit.profile import ProfileOptions, profile, why_not_profiled

    try:
        manifest, reused = _export(cell, opts, device_profile, progress, data)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # one bad cell must not stop the grid; its reason goes in the table
        row.update(status="export failed", error=first_line(e))
        return
    row["exported"] = "reused" if reused else "exported"
    _fill_from_manifest(row, manifest)
    if data is not None and data.format == manifest.dataset:
        try:
            _fill_metric(row, manifest, data, opts, progress)
        except KeyboardInterrupt:
            raise
        except EdgekitError as e:
            row.update(status="eval failed", error=first_line(e))
            return
    why = why_not_profiled(manifest, serials == [None])  # an iPhone's; the NPU's on the host
    if why is not None:
        if manifest.verification["passed"]:
            row["status"] = f"exported; not profiled ({why})"
        else:
            row.update(status="verification failed", error=f"not profiled: {why}")
        return
    records = done(manifest.sha256)  # {serial: the last record of this artifact on that phone}
    missing = [s for s in serials if s not in records]
    if missing:
        device = opts.device if missing == [None] else ",".join(missing)
        try:
            fresh = profile(ProfileOptions((Path(manifest.artifact_dir),), device, opts.threads, None, opts.runs,
                                           opts.warmup, results=results_path, adb_server=opts.adb_server), progress)
        except KeyboardInterrupt:
            raise
        except EdgekitError as e:
            row.update(status="profile failed", error=first_line(e))
            return
        failed = failed_phones(fresh)
        records.update({r["device"]["serial"]: r for r in measured(fresh)})
        if failed:
            row["error"] = "; ".join(f"{r['device']['serial']}: {r['failed']}" for r in failed)
        row["profiled"] = "measured" if len(missing) == len(serials) else "partly from results.jsonl"
    else:
        row["profiled"] = "from results.jsonl"
    if not records:
        row["status"] = "profile failed"
        return
    _fill_from_record(row, [records[s] for s in serials if s in records])
    row["status"] = ("ok" if manifest.verification["passed"] else "verification failed") if len(records) == len(
        serials) else "profile failed on some phones"


def sweep(opts: SweepOptions, progress: Progress = lambda _m: None) -> dict:
    """Run the grid; return {"rows": [...], "plot": path, "results": path, "device": ...}."""
    from edgekit.profile import RESULTS, read_results

    if opts.runs < 1 or opts.warmup < 0:
        raise EdgekitError("--runs must be >= 1 and --warmup >= 0")
    if opts.threads is not None and opts.threads < 1:
        raise EdgekitError(f"--threads must be at least 1 (got {opts.threads})")
    if opts.cluster is not None:
        raise EdgekitError("a sweep with a cluster runs through edgekit.run_cluster_sweep (edgekit.cluster)")
    cells = plan(opts)
    data = _eval_data(opts, cells)
    device, serials = _check_device(opts.device, {c.target for c in cells}, opts.adb_server)
    results_path = Path(opts.output) / RESULTS
    same_device = _device_key(serials)

    def done(sha: str) -> dict:
        """{phone serial (None: the host): its last measurement of this exact artifact in results.jsonl}."""
        return {r["device"]["serial"]: r for r in read_results(results_path)
                if r.get("sha256") == sha and same_device(r)}

    rows, macs_cache = [], {}
    for i, cell in enumerate(cells, 1):
        progress(f"[{i}/{len(cells)}] {cell.label}")
        row = _row(cell, _macs(cell.variant, cell.resolution, macs_cache))
        _run_cell(cell, row, opts, device, serials, results_path, done,
                  lambda msg, i=i: progress(f"[{i}/{len(cells)}] {msg}"), data)
        rows.append(row)
    return _result(rows, opts, device, [s for s in serials if s], results_path, macs_cache)


def _result(rows: list[dict], opts: SweepOptions, device: str, phones: list[str], results_path: Path,
            macs_cache: dict) -> dict:
    from edgekit.sweep_plot import paper_points, plot

    plot_path = Path(opts.plot) if opts.plot else Path(opts.output) / "sweep.png"
    points = paper_points(sorted({r["variant"] for r in rows}), device, macs_cache)
    plot(rows, points, device, plot_path)
    return {"device": opts.device, "device_profile": device, "phones": phones, "results": str(results_path),
            "plot": str(plot_path), "rows": rows, "paper_points": points, "verdict": verdict(rows)}


def verdict(rows: list[dict]) -> str | None:
    """The line a sweep ends with when cells failed (how many, and which), None when none did."""
    failed = [r for r in rows if r["status"] == "verification failed"]
    broken = [r for r in rows if r["status"] != "verification failed" and "failed" in (r["status"] or "")]
    parts = []
    if failed:
        parts.append(f"{len(failed)} of {len(rows)} cells FAILED verification: "
                     + ", ".join(r["cell"] for r in failed))
    if broken:
        parts.append(f"{len(broken)} of {len(rows)} cells failed to run: "
                     + ", ".join(f"{r['cell']} ({r['status']})" for r in broken))
    return "; ".join(parts) or None


def exit_code(result: dict) -> int:
    """3 when a cell's artifact FAILED verification (as `export` exits), 1 when a cell failed to run."""
    rows = result["rows"]
    if any(r["status"] == "verification failed" for r in rows):
        return 3
    return 1 if any("failed" in (r["status"] or "") for r in rows) else 0


def _eval_data(opts: SweepOptions, cells: list[Cell]):
    """The labelled set, read before any work; it must be the dataset of at least one variant."""
    if opts.eval_data is None:
        return None
    from edgekit.datasets import open_dataset
    from edgekit.registry import get_variant

    datasets = {get_variant(c.variant).dataset: get_variant(c.variant).num_classes for c in cells}
    data = open_dataset(opts.eval_data, "auto", datasets.get("imagenet", 1000))
    if data.format not in datasets:
        raise EdgekitError(f"--eval-data {opts.eval_data} holds {data.format} data; none of --variants predicts "
                           f"{data.format} classes ({', '.join(sorted(datasets))})")
    return data


def _check_device(device: str, targets: set[str], adb_server: str | None = None) -> tuple[str, list]:
    """(the device profile's name, the phones' serials: [None] for the host), after checking the
    phones and the harnesses are there: a sweep must not export for an hour and then find no phone.
    Several phones must share one profile (the grid is exported once, for it); a phone lost
    mid-sweep fails only its own measurements."""
    if device == "host":
        return "host", [None]
    from edgekit.android_harness.adb import Adb
    from edgekit.phones import resolve_devices
    from edgekit.profile import find_harness
    from edgekit.targets import TARGETS

    phones = resolve_devices(device, Adb(server=adb_server))
    profiles = sorted({t.profile.name for t in phones})
    if len(profiles) > 1:
        raise EdgekitError(f"--device {device} names phones of {len(profiles)} profiles ({', '.join(profiles)}): a "
                           "sweep exports its grid for one profile; sweep each profile on its own")
    for harness in dict.fromkeys(TARGETS[t].harness for t in targets if TARGETS[t].harness is not None):
        find_harness(None, harness)
    return profiles[0], [t.serial for t in phones]
