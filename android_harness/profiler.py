"""`edgekit profile` and `edgekit devices`: run benchmark_model on a phone (or the host harness here)
for exported TFLite artifacts, and record each result.

On a phone: push the harness and the model to /data/local/tmp/edgekit/, chmod, run under `taskset`
with the profile's big-core mask, threads and delegate, parse the output, clean up unless --keep.
Every finished measurement is appended to results.jsonl atomically; a fault (device lost, harness
crash, no timings printed) raises before anything is recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from android_harness import benchmark_output
from android_harness.adb import Adb, DeviceLost, quote
from android_harness.profiles import HOST, PROFILES, DeviceProfile, check_delegate, get_profile, profile_for
from edgekit.artifacts import sha256
from edgekit.errors import EdgekitError

DEVICE_DIR = "/data/local/tmp/edgekit"
HARNESS_NAME = "benchmark_model"
DEFAULT_ROOT = Path("edgekit-artifacts")
RESULTS = "results.jsonl"
Progress = Callable[[str], None]


# ---- the harness binary, given once by the user ---------------------------------------------------
def cache_dir() -> Path:
    root = os.environ.get("EDGEKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgekit")
    return Path(root)


def add_harness(path: Path) -> dict:
    """Store LiteRT's benchmark_model for Android arm64 in edgekit's cache, with its sha256."""
    path = Path(path)
    if not path.is_file():
        raise EdgekitError(f"harness not found: {path}")
    head = path.read_bytes()[:20]
    kind = "ELF" if head[:4] == b"\x7fELF" else "script" if head[:2] == b"#!" else None
    if kind is None:
        raise EdgekitError(f"{path} is neither an executable (ELF) nor a script: not a benchmark_model")
    arch = None
    if kind == "ELF":
        machine = int.from_bytes(head[18:20], "little")
        arch = {183: "arm64", 62: "x86_64", 40: "arm"}.get(machine, f"machine {machine}")
    folder = cache_dir() / "harness"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{HARNESS_NAME}.tmp"
    shutil.copyfile(path, tmp)
    tmp.chmod(0o755)
    tmp.replace(folder / HARNESS_NAME)
    record = {"path": str(folder / HARNESS_NAME), "sha256": sha256(folder / HARNESS_NAME), "source": str(path),
              "kind": kind, "arch": arch, "added": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (folder / "harness.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def find_harness(explicit: Path | None) -> tuple[Path, str]:
    if explicit is not None:
        if not Path(explicit).is_file():
            raise EdgekitError(f"harness not found: {explicit}")
        return Path(explicit), sha256(Path(explicit))
    record_file = cache_dir() / "harness" / "harness.json"
    if not record_file.is_file():
        raise EdgekitError("no benchmark harness: give LiteRT's benchmark_model for Android arm64 once with "
                           "`edgekit harness add PATH` (or --harness PATH); edgekit never downloads it")
    record = json.loads(record_file.read_text())
    path = Path(record["path"])
    if not path.is_file() or sha256(path) != record["sha256"]:
        raise EdgekitError(f"the cached harness {path} is missing or changed since `edgekit harness add`; add it again")
    return path, record["sha256"]


# ---- devices ----------------------------------------------------------------------------------------
def list_devices() -> list[dict]:
    """Every device adb sees, with its SoC and the profile it matches (for `edgekit devices`)."""
    adb = Adb()
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


@dataclass
class Target:
    profile: DeviceProfile
    serial: str | None  # None: the host
    props: dict[str, str]


def resolve_device(device: str, adb: Adb | None = None) -> Target:
    """`--device`: host, a profile name (exactly one connected phone must match) or an adb serial."""
    if device == "host":
        return Target(HOST, None, {})
    adb = adb or Adb()
    connected = adb.devices()
    by_serial = {d.serial: d for d in connected}
    if device in by_serial:
        adb.device(device)  # raises for unauthorized/offline
        props = adb.getprop(device)
        profile = profile_for(props)
        if profile is None:
            raise EdgekitError(f"device {device} (SoC {props.get('ro.soc.model') or props.get('ro.board.platform')}) "
                               f"matches no profile; known: {', '.join(PROFILES)}")
        return Target(profile, device, props)
    profile = get_profile(device)
    if not connected:
        raise EdgekitError(f"no device connected for profile {device} (adb devices lists none)")
    matches, not_ready = [], []
    for d in connected:
        if d.state != "device":
            not_ready.append(d)
            continue
        props = adb.getprop(d.serial)
        if profile.matches(props):
            matches.append((d.serial, props))
    if len(matches) > 1:
        raise EdgekitError(f"{len(matches)} connected devices match {device} ({', '.join(s for s, _ in matches)}): "
                           "pass --device SERIAL")
    if not matches:
        if not_ready:
            from android_harness.adb import _state_error

            raise _state_error(not_ready[0])
        raise EdgekitError(f"no connected device matches profile {device} ({profile.description})")
    return Target(profile, *matches[0])


# ---- one measurement ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileOptions:
    artifacts: tuple[Path, ...] = ()
    device: str = "host"
    threads: int | None = None
    delegate: str = "cpu"
    runs: int = 50
    warmup: int = 5
    op_profile: bool = False
    keep: bool = False
    harness: Path | None = None
    results: Path | None = None  # default: <root>/results.jsonl
    root: Path = DEFAULT_ROOT


def _harness_flags(model: str, threads: int, delegate: str, runs: int, warmup: int, op_profile: bool) -> list[str]:
    flags = [f"--graph={model}", f"--num_threads={threads}", f"--num_runs={runs}", f"--warmup_runs={warmup}"]
    flags += {"cpu": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"], "nnapi": ["--use_nnapi=true"],
              "qnn": [f"--external_delegate_path={DEVICE_DIR}/libQnnTFLiteDelegate.so"]}[delegate]
    if op_profile:
        flags.append("--enable_op_profiling=true")
    return flags


def _run_host(model: Path, opts: ProfileOptions, threads: int) -> str:
    cmd = [sys.executable, "-m", "android_harness.host_benchmark",
           *_harness_flags(str(model), threads, opts.delegate, opts.runs, opts.warmup, opts.op_profile)]
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise EdgekitError(f"host harness failed (exit {done.returncode}): {_last_error(text)}")
    return text


def _last_error(text: str) -> str:
    errors = benchmark_output.parse(text).errors
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return errors[-1] if errors else (lines[-1] if lines else "no output")


def _run_device(adb: Adb, target: Target, model: Path, harness: Path, opts: ProfileOptions, threads: int,
                progress: Progress) -> str:
    serial = target.serial
    remote_model = f"{DEVICE_DIR}/{model.parent.name}-{model.name}"
    remote_harness = f"{DEVICE_DIR}/{HARNESS_NAME}"
    code, out = adb.shell(serial, f"mkdir -p {DEVICE_DIR}")
    if code != 0:
        raise EdgekitError(f"cannot create {DEVICE_DIR} on {serial}: {out.strip()}")
    try:
        progress(f"pushing harness and {model.parent.name} to {serial}")
        adb.push(serial, harness, remote_harness)
        adb.push(serial, model, remote_model)
        code, out = adb.shell(serial, f"chmod 755 {quote(remote_harness)}")
        if code != 0:
            raise EdgekitError(f"chmod failed on {serial}: {out.strip()}")
        flags = _harness_flags(remote_model, threads, opts.delegate, opts.runs, opts.warmup, opts.op_profile)
        pin = f"taskset {target.profile.core_mask} " if target.profile.core_mask else ""
        command = f"cd {DEVICE_DIR} && {pin}{quote(remote_harness)} " + " ".join(quote(f) for f in flags)
        progress(f"running benchmark_model on {serial} ({threads} threads, {opts.delegate})")
        code, out = adb.shell(serial, command)
        if code != 0:
            raise EdgekitError(f"benchmark_model failed on {serial} (exit {code}): {_last_error(out)}")
        return out
    finally:
        if not opts.keep:
            try:
                adb.shell(serial, f"rm -rf {DEVICE_DIR}", timeout=60)
            except DeviceLost:
                pass  # the device is gone; nothing left to clean from here


def _paper_figure(manifest: dict, profile: DeviceProfile) -> dict | None:
    from edgekit.registry import get_variant

    variant = get_variant(manifest["variant"])
    res = tuple(manifest["resolution"])
    for lat in variant.paper.latency:
        if lat.device == profile.name and tuple(lat.resolution) == res:
            return {"ms": lat.ms, "device": lat.device, "runtime": lat.runtime}
    return None


def append_result(path: Path, record: dict) -> None:
    """Append one JSON line atomically: the new file (old lines + this one) replaces the old in one
    rename, so a crash at any moment leaves either the old file or the new, never a torn line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(old + json.dumps(record, sort_keys=True).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def read_results(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _artifacts(opts: ProfileOptions) -> list[Path]:
    from edgekit.artifacts import MANIFEST

    if opts.artifacts:
        return [Path(a) for a in opts.artifacts]
    # a dot-folder is an export still being written (or one killed before its final rename)
    found = sorted(p.parent for p in Path(opts.root).glob(f"*/{MANIFEST}") if not p.parent.name.startswith("."))
    if not found:
        raise EdgekitError(f"no artifacts under {opts.root}: export one first (edgekit export b0-seg)")
    return found


def profile(opts: ProfileOptions, progress: Progress = lambda _m: None) -> list[dict]:
    """Measure each artifact on the chosen device; return the records appended to results.jsonl."""
    from edgekit.artifacts import read_manifest

    if opts.runs < 1 or opts.warmup < 0:
        raise EdgekitError("--runs must be >= 1 and --warmup >= 0")
    artifacts, manifests = [], []
    for a in _artifacts(opts):
        m = read_manifest(a)
        if m["target"] != "tflite":
            if opts.artifacts:  # asked for by name: say why not
                raise EdgekitError(f"{a} is a {m['target']} artifact; profiling runs TFLite models "
                                   "(CoreML needs an iPhone and Xcode)")
            progress(f"skipping {a.name}: not a TFLite artifact")
            continue
        artifacts.append(a)
        manifests.append(m)
    if not artifacts:
        raise EdgekitError(f"no TFLite artifacts under {opts.root}: export one first (edgekit export b0-seg)")
    adb = None
    if opts.device == "host":
        target = Target(HOST, None, {})
        harness_sha = None
    else:
        adb = Adb()
        target = resolve_device(opts.device, adb)
        harness, harness_sha = find_harness(opts.harness)
    check_delegate(target.profile, opts.delegate)
    threads = opts.threads or target.profile.threads
    results_path = Path(opts.results) if opts.results else Path(opts.root) / RESULTS
    records = []
    for art, manifest in zip(artifacts, manifests):
        model = art / manifest["model_file"]
        if target.serial is None:
            progress(f"profiling {art.name} on the host ({threads} threads)")
            text = _run_host(model, opts, threads)
        else:
            text = _run_device(adb, target, model, harness, opts, threads, progress)
        parsed = benchmark_output.parse(text)
        if not parsed.complete:
            raise EdgekitError(f"benchmark_model printed no timings for {art.name}: {_last_error(text)}")
        summary = parsed.summary()
        # the host has no published figure: show the paper's phone figure for scale, never a ratio
        paper = _paper_figure(manifest, PROFILES["s8gen1"] if target.profile is HOST else target.profile)
        record = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "artifact": str(art), "sha256": manifest["sha256"], "variant": manifest["variant"],
            "resolution": manifest["resolution"], "target": manifest["target"], "precision": manifest["precision"],
            "random_weights": manifest["source"].get("weights") is None,
            "device": {"profile": target.profile.name, "serial": target.serial,
                       "model": target.props.get("ro.product.model"), "soc": target.props.get("ro.soc.model"),
                       "core_mask": target.profile.core_mask},
            "delegate": opts.delegate, "threads": threads, "warmup": opts.warmup, "harness_sha256": harness_sha,
            **summary,
            "op_profile": parsed.op_profile or None,
            "op_profile_note": None if parsed.op_profile or not opts.op_profile else
            "no per-op table: the host harness has no profiler (ai-edge-litert exposes none)"
            if target.serial is None else "benchmark_model printed no per-op table",
            "paper": paper,
            "vs_paper": (summary["median_ms"] or summary["mean_ms"]) / paper["ms"]
            if paper and paper["device"] == target.profile.name else None,
        }
        append_result(results_path, record)
        records.append(record)
    return records
