"""`edgekit profile` and `edgekit devices`: run each artifact's benchmark program (its target's
`harness` in the target table: benchmark_model for TFLite, ...) on a phone or its host stand-in
here, and record each result. Orchestration: it reads the table and drives the pieces of
edgekit.android_harness (adb, device profiles, the harness type), which know no target.

Several phones (`--device all`, a profile with several phones, a comma list) are measured at the same
time, one worker each (edgekit.phones); a phone that fails fails alone. Before running, the model
file must still have the sha256 its manifest recorded (`--force` measures
a changed file and records the sha256 of the bytes that ran). On a phone: push the harness and the
model to /data/local/tmp/edgekit/, chmod, run under `taskset` with the profile's big-core mask,
threads and delegate, parse the output, clean up unless --keep. Every finished measurement is
appended atomically to results.jsonl next to the artifacts (or --results), a path checked before
the benchmark runs; a fault (device lost, harness crash, no timings printed) raises before anything
is recorded, and a write that fails after a measurement keeps the measurement and says why.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.android_harness.adb import Adb
from edgekit.android_harness.harnesses import Harness, RunSettings, host_command
from edgekit.android_harness.profiles import HOST, PROFILES, DeviceProfile, check_delegate, profile_for
from edgekit.artifacts import ARTIFACTS_DIR, sha256
from edgekit.errors import EdgekitError
from edgekit.phones import PhoneSession, Target, on_phones, resolve_devices

DEFAULT_ROOT = ARTIFACTS_DIR
RESULTS = "results.jsonl"
Progress = Callable[[str], None]


# ---- the harness binaries, given once by the user ---------------------------------------------------
def cache_dir() -> Path:
    root = os.environ.get("EDGEKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgekit")
    return Path(root)


def _elf_arch(path: Path) -> tuple[str | None, str | None]:
    """('ELF'|'script'|None, 'arm64'|... for ELF files)."""
    head = path.read_bytes()[:20]
    kind = "ELF" if head[:4] == b"\x7fELF" else "script" if head[:2] == b"#!" else None
    arch = None
    if kind == "ELF":
        machine = int.from_bytes(head[18:20], "little")
        arch = {183: "arm64", 62: "x86_64", 40: "arm", 164: "hexagon"}.get(machine, f"machine {machine}")
    return kind, arch


def add_harness(path: Path, kind: str = "benchmark_model", libraries: tuple[Path, ...] = ()) -> dict:
    """Store a benchmark program for Android arm64 (and the libraries it needs on the phone) in
    edgekit's cache, each with its sha256."""
    from edgekit.targets import get_harness

    harness = get_harness(kind)
    path = Path(path)
    for file in (path, *map(Path, libraries)):
        if not file.is_file():
            raise EdgekitError(f"harness not found: {file}")
    kind_of_file, arch = _elf_arch(path)
    if kind_of_file is None:
        raise EdgekitError(f"{path} is neither an executable (ELF) nor a script: not a {harness.name}")
    folder = cache_dir() / "harness" / harness.name
    folder.mkdir(parents=True, exist_ok=True)
    stored = {}
    for source, name in ((path, harness.binary), *((Path(lib), Path(lib).name) for lib in libraries)):
        tmp = folder / f".{name}.tmp"
        shutil.copyfile(source, tmp)
        tmp.chmod(0o755)
        tmp.replace(folder / name)
        stored[name] = sha256(folder / name)
    record_file = folder / "harness.json"
    old_libs = json.loads(record_file.read_text()).get("libraries", {}) if record_file.is_file() else {}
    record = {"kind": harness.name, "path": str(folder / harness.binary), "sha256": stored.pop(harness.binary),
              "source": str(path), "file": kind_of_file, "arch": arch,
              "libraries": {**old_libs, **stored},
              "added": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return record


@dataclass(frozen=True)
class HarnessFiles:
    binary: Path
    sha256: str
    libraries: dict[str, Path]  # file name -> local path


def find_harness(explicit: Path | None, harness: Harness) -> HarnessFiles:
    """The program (and its libraries) given with --harness PATH (libraries: the files next to it) or
    stored with `edgekit harness add`, checked against the sha256s recorded then."""
    if explicit is not None:
        explicit = Path(explicit)
        if not explicit.is_file():
            raise EdgekitError(f"harness not found: {explicit}")
        libs = {p.name: p for p in explicit.parent.iterdir() if p.is_file() and p.suffix == ".so"}
        return HarnessFiles(explicit, sha256(explicit), libs)
    record_file = cache_dir() / "harness" / harness.name / "harness.json"
    if not record_file.is_file():
        raise EdgekitError(f"no {harness.name} harness: give {harness.what} once with `edgekit harness add PATH "
                           f"--kind {harness.name}` (or --harness PATH); edgekit never downloads it")
    record = json.loads(record_file.read_text())
    path = Path(record["path"])
    libs = {name: path.parent / name for name in record.get("libraries", {})}
    for file, digest in ((path, record["sha256"]), *((libs[n], d) for n, d in record.get("libraries", {}).items())):
        if not file.is_file() or sha256(file) != digest:
            raise EdgekitError(f"the cached harness file {file} is missing or changed since `edgekit harness add`; "
                               "add it again")
    return HarnessFiles(path, record["sha256"], libs)


def check_libraries(harness: Harness, files: HarnessFiles, profile: DeviceProfile) -> None:
    missing = [name for name in harness.libraries(profile) if name not in files.libraries]
    if missing:
        raise EdgekitError(f"{harness.name} on {profile.name} needs {', '.join(missing)}: add "
                           f"{'it' if len(missing) == 1 else 'them'} with `edgekit harness add PATH --kind "
                           f"{harness.name} --lib FILE` (from the QAIRT SDK); nothing was pushed")


# ---- devices ----------------------------------------------------------------------------------------
def list_devices(adb_server: str | None = None) -> list[dict]:
    """Every device adb sees, with its SoC and the profile it matches (for `edgekit devices`)."""
    adb = Adb(server=adb_server)
    rows = []
    for d in adb.devices():
        row = {"serial": d.serial, "state": d.state, "model": d.info.get("model", "").replace("_", " ") or None,
               "soc": None, "platform": None, "profile": None}
        if d.state == "device":
            try:
                props = adb.getprop(d.serial)
            except EdgekitError:
                row["state"] = "lost"
            else:
                row.update(model=props.get("ro.product.model") or row["model"], soc=props.get("ro.soc.model"),
                           platform=props.get("ro.board.platform"))
                profile = profile_for(props)
                row["profile"] = profile.name if profile else None
        rows.append(row)
    return rows


def lock_dir() -> Path:
    return cache_dir() / "locks"


# ---- one measurement ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileOptions:
    artifacts: tuple[Path, ...] = ()
    device: str = "host"
    threads: int | None = None
    delegate: str | None = None  # None: the harness's default
    runs: int = 50
    warmup: int = 5
    op_profile: bool = False
    keep: bool = False
    harness: Path | None = None
    results: Path | None = None  # default: results.jsonl next to each artifact
    root: Path = DEFAULT_ROOT
    force: bool = False  # measure a model file whose sha256 no longer matches its manifest
    adb_server: str | None = None  # HOST:PORT of the adb server (default: ADB_SERVER_SOCKET or adb's own)


def _run_host(harness: Harness, model: Path, run: RunSettings) -> str:
    done = subprocess.run(host_command(harness, model, run), capture_output=True, text=True, errors="replace")
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise EdgekitError(f"host harness failed (exit {done.returncode}): {_last_error(harness, text)}")
    return text


def _last_error(harness: Harness, text: str) -> str:
    errors = harness.parse(text).errors
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return errors[-1] if errors else (lines[-1] if lines else "no output")


def _run_device(adb: Adb, target: Target, manifest, harness: Harness, files: HarnessFiles, run: RunSettings,
                keep: bool, progress: Progress) -> str:
    model_files = harness.model_files(manifest, target.profile)  # raises if the artifact cannot run here
    with PhoneSession(adb, target, harness, files.binary, files.libraries, model_files, keep, progress,
                      lock_dir()) as session:
        progress(f"running {harness.name} on {target.serial} ({run.threads} threads, {run.delegate})")
        code, out = session.run(session.flags(run))
        if code != 0:
            raise EdgekitError(f"{harness.name} failed on {target.serial} (exit {code}): {_last_error(harness, out)}")
        return out


def _paper_figure(manifest, profile: DeviceProfile) -> dict | None:
    from edgekit.registry import get_variant

    variant = get_variant(manifest.variant)
    for lat in variant.paper.latency:
        if lat.device == profile.name and tuple(lat.resolution) == manifest.size:
            return {"ms": lat.ms, "device": lat.device, "runtime": lat.runtime}
    return None


def append_result(path: Path, record: dict) -> None:
    """Append one JSON line atomically: the new file (old lines + this one) replaces the old in one
    rename, so a crash at any moment leaves either the old file or the new, never a torn line."""
    from edgekit.locks import file_lock

    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path):  # several phones (or edgekit runs) append to one file
        _append(path, record)


def _append(path: Path, record: dict) -> None:
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(old + json.dumps(record, sort_keys=True).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_results(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def check_results_path(path: Path) -> None:
    """Before any benchmark runs: the results file can be written (a folder is not a file)."""
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise EdgekitError(f"results file {path} is a folder: give a file path (--results FILE)")
    if path.exists() and not os.access(path, os.W_OK):
        raise EdgekitError(f"results file {path} is not writable")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise EdgekitError(f"results file {path} cannot be written ({e.strerror or e}): use --results FILE") from e


def _artifacts(opts: ProfileOptions) -> list[tuple[Path, bool]]:
    """(artifact directory, named by the user) for each one to profile: each path given is an
    artifact or a folder of them (a dot-folder is an export still being written, or one killed
    before its final rename); none given: the folders under the default root."""
    from edgekit.manifest import MANIFEST

    def inside(folder: Path) -> list[tuple[Path, bool]]:
        return [(p.parent, False) for p in sorted(folder.glob(f"*/{MANIFEST}")) if not p.parent.name.startswith(".")]

    if not opts.artifacts:
        found = inside(Path(opts.root))
        if not found:
            raise EdgekitError(f"no artifacts under {opts.root}: export one first (edgekit export b0-seg)")
        return found
    paths = []
    for given in map(Path, opts.artifacts):
        if not given.exists():
            raise EdgekitError(f"{given} not found")
        if (given / MANIFEST).is_file() or not given.is_dir():
            paths.append((given, True))
        elif found := inside(given):
            paths += found
        else:
            raise EdgekitError(f"{given} is not an edgekit artifact and holds none (no {MANIFEST} in it or its "
                               "folders)")
    return paths


def why_not_profiled(m, on_host: bool) -> str | None:
    """Why this artifact is not measured on this run's device, or None when it is."""
    if m.spec.harness is None:
        return f"the {m.target} target is not profiled: {m.spec.not_profiled}"
    if on_host and m.spec.harness.host_module is None:
        return m.spec.harness.no_host
    return None


def _selected(opts: ProfileOptions) -> tuple[list, list[dict]]:
    """(the manifests to measure, one record per artifact this run does not measure, with why). A
    skipped artifact the user named makes the command exit 1 when others are measured (`named`), and
    is the error when it is the only one; one found in a folder is skipped with its line."""
    from edgekit.manifest import read_manifest

    manifests, skipped = [], []
    for path, named in _artifacts(opts):
        m = read_manifest(path)
        why = why_not_profiled(m, opts.device == "host")
        if why is not None:
            skipped.append({"artifact": str(path), "variant": m.variant, "target": m.target, "precision": m.precision,
                            "skipped": f"{path.name}: {why}", "named": named})  # the report prints why
            continue
        manifests.append(m)
    if not manifests:
        if skipped:
            raise EdgekitError("nothing to profile here: " + "; ".join(s["skipped"] for s in skipped))
        raise EdgekitError(f"no artifacts to profile under {', '.join(map(str, opts.artifacts or (opts.root,)))}: "
                           "export one for a phone first (edgekit export b0-seg)")
    return manifests, skipped


def _measured_sha(manifest, force: bool) -> tuple[str, str | None]:
    """(sha256 of the bytes that will run, a note if they are not the exported ones)."""
    model = manifest.model_path
    if not model.exists():
        raise EdgekitError(f"{model} is missing")
    actual = sha256(model)
    if actual == manifest.sha256:
        return actual, None
    if not force:
        raise EdgekitError(f"{model} does not match the sha256 in its manifest (modified after export?): export it "
                           "again, or pass --force to measure it anyway under its real sha256")
    return actual, f"model file changed since export (manifest sha256 {manifest.sha256[:12]}...); measured anyway"


NOISY_CV = 0.10  # std over mean above which a measurement is called noisy


def _noisy(summary: dict) -> bool:
    """Runs that spread more than 10% around their mean (240 +- 103 ms was seen): other load, a phone
    throttling, or too few runs; the median is still reported, the table says not to trust it alone."""
    mean, std = summary.get("mean_ms"), summary.get("std_ms")
    return bool(mean and std is not None and std / mean > NOISY_CV)


def profile(opts: ProfileOptions, progress: Progress = lambda _m: None) -> list[dict]:
    """Measure each artifact on the chosen device; return the records appended to results.jsonl, then
    one {"artifact", "variant", "target", "precision", "skipped": why} per artifact the user named
    that its target does not profile (never recorded)."""
    if opts.runs < 1 or opts.warmup < 0:
        raise EdgekitError("--runs must be >= 1 and --warmup >= 0")
    if opts.threads is not None and opts.threads < 1:
        raise EdgekitError(f"--threads must be at least 1 (got {opts.threads})")
    manifests, skipped = _selected(opts)
    shas = [_measured_sha(m, opts.force) for m in manifests]
    results_paths = [Path(opts.results) if opts.results else Path(m.artifact_dir).parent / RESULTS for m in manifests]
    for path in dict.fromkeys(results_paths):
        check_results_path(path)
    adb = None if opts.device == "host" else Adb(server=opts.adb_server)
    targets = resolve_devices(opts.device, adb, progress)
    harnesses = [m.spec.harness for m in manifests]
    binaries = {}
    for harness in dict.fromkeys(harnesses):
        for target in targets:  # on the host, _selected has left out what the host cannot time
            check_delegate(target.profile, opts.delegate or harness.delegates[0], harness.delegates)
        if targets[0].serial is not None:
            binaries[harness.name] = find_harness(opts.harness, harness)

    def measure(target: Target) -> list[dict]:
        if target.serial is not None:  # this phone can run them all: checked before any push
            for manifest, harness in zip(manifests, harnesses):
                check_libraries(harness, binaries[harness.name], target.profile)
                harness.model_files(manifest, target.profile)
        threads = opts.threads or target.profile.threads
        records = []
        for manifest, (actual_sha, note), results_path, harness in zip(manifests, shas, results_paths, harnesses):
            started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
            art, model = Path(manifest.artifact_dir), manifest.model_path
            run = RunSettings(threads, opts.delegate or harness.delegates[0], opts.runs, opts.warmup, opts.op_profile)
            if target.serial is None:
                progress(f"profiling {art.name} on the host ({threads} threads)")
                text = _run_host(harness, model, run)
                harness_sha = None
            else:
                harness_sha = binaries[harness.name].sha256
                text = _run_device(adb, target, manifest, harness, binaries[harness.name], run, opts.keep, progress)
            parsed = harness.parse(text)
            if not parsed.complete:
                raise EdgekitError(f"{harness.name} printed no timings for {art.name}: {_last_error(harness, text)}")
            records.append(_record(manifest, target, harness, run, parsed, opts, actual_sha, note, harness_sha,
                                   started, results_path))
        return records

    outcomes = on_phones(targets, measure, progress)
    records = [r for o in outcomes if o.error is None for r in o.result]
    failed = [{"device": o.target.describe(), "failed": o.error} for o in outcomes if o.error is not None]
    return records + failed + skipped


def _record(manifest, target: Target, harness: Harness, run: RunSettings, parsed, opts: ProfileOptions,
            actual_sha: str, note: str | None, harness_sha: str | None, started: str, results_path: Path) -> dict:
    """One measurement's record, appended to its results file."""
    summary = parsed.summary()
    # the host has no published figure: show the paper's phone figure for scale, never a ratio
    paper = _paper_figure(manifest, PROFILES["s8gen1"] if target.profile is HOST else target.profile)
    record = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "started": started,
        "artifact": manifest.artifact_dir, "sha256": actual_sha, "manifest_sha256": manifest.sha256,
        "integrity": note or "model file as exported", "variant": manifest.variant,
        "resolution": manifest.resolution, "target": manifest.target, "precision": manifest.precision,
        "random_weights": manifest.random_weights,
        "device": target.describe(),
        "harness": harness.name, "delegate": run.delegate, "threads": run.threads, "warmup": opts.warmup,
        "harness_sha256": harness_sha,
        **summary,
        "op_profile": parsed.op_profile or None,
        "op_profile_note": None if parsed.op_profile or not opts.op_profile else
        harness.no_op_profile_on_host if target.serial is None else f"{harness.name} printed no per-op table",
        "paper": paper,
        "vs_paper": (summary["median_ms"] or summary["mean_ms"]) / paper["ms"]
        if paper and paper["device"] == target.profile.name else None,
        "noisy": _noisy(summary),
    }
    record["results_file"] = str(results_path)
    try:
        append_result(results_path, record)
    except OSError as e:
        record["results_file"] = None
        record["results_error"] = f"could not append to {results_path} ({e.strerror or e}): the measurement is " \
                                  "only in this output"
    return record
