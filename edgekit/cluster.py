"""A sweep spread over a lab's machines and their phones, on Dask's distributed scheduler.

Each lab machine runs `edgekit worker tcp://SCHEDULER:8786` (the scheduler itself is `dask scheduler`):
a Dask worker advertising, as Dask resources, what the machine offers: `export` slots and `memory-gib`
for exports, and `phone-<profile>` for each phone profile its adb server sees (how many phones),
refreshed as phones come and go. `edgekit sweep ... --cluster tcp://SCHEDULER:8786` runs the same grid:
each cell's export (and verification) goes to a worker with an export slot and the memory that
variant needs, each profile to a worker holding a phone of that profile. An artifact travels as bytes
through Dask (or, with `--store DIR`, a folder every machine shares) and is checked by its sha256 on
arrival; the client writes every artifact and result into the local sweep folder atomically as cells
finish, so the output is a local sweep's and the same command resumes. A worker lost mid-cell costs that attempt only (Dask reruns it elsewhere; a
task that raised is retried once); Ctrl-C cancels this sweep's tasks.

The tasks run the local sweep's own code (edgekit.sweep) on the worker.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from edgekit.errors import EdgekitError

EXPORT = "export"  # resource: concurrent exports a worker takes
MEMORY = "memory-gib"  # resource: memory a worker offers its exports
ADB_ENV = "EDGEKIT_WORKER_ADB_SERVER"  # where a worker's tasks find its phones
INSTALL = "pip install 'edgekit[cluster]'"
REFRESH_S = 10.0
WORKERLESS_S = 60.0  # a sweep left with no worker this long records its unfinished cells failed


def phone_resource(profile: str) -> str:
    return f"phone-{profile}"


def require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise EdgekitError(f"--cluster needs Dask's distributed, which is not installed ({INSTALL})") from None


def export_memory_gib(variant, size: tuple[int, int]) -> float:
    """What one export of `variant` at `size` may need: 2 GiB, a quarter GiB per million parameters
    (the converters hold several copies of the weights), 3 GiB per megapixel of input (onnx2tf's and
    the calibration's activations). An estimate, on the safe side (l3-cls, 246M parameters, asks over 60 GiB; it needed more than 24)."""
    from edgekit.complexity import measure

    params_m = measure(variant, size).params / 1e6
    return round(2.0 + 0.25 * params_m + 3.0 * size[0] * size[1] / 1e6, 1)


def phones_by_profile(adb_server: str | None) -> dict[str, int]:
    """How many ready phones of each known profile this machine's adb server sees (none without adb)."""
    from edgekit.android_harness.adb import Adb
    from edgekit.android_harness.profiles import profile_for

    try:
        adb = Adb(server=adb_server)
        counts: dict[str, int] = {}
        for device in adb.devices():
            if device.state != "device":
                continue
            profile = profile_for(adb.getprop(device.serial))
            if profile is not None:
                counts[profile.name] = counts.get(profile.name, 0) + 1
        return counts
    except (EdgekitError, OSError):
        return {}


def worker_resources(adb_server: str | None, export_slots: int, memory_gib: float) -> dict[str, float]:
    resources = {EXPORT: float(export_slots), MEMORY: float(memory_gib)}
    resources.update({phone_resource(p): float(n) for p, n in phones_by_profile(adb_server).items()})
    return resources


def default_memory_gib() -> float:
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return round(pages * size / 2**30 * 0.9, 1)


def run_worker(scheduler: str, adb_server: str | None = None, export_slots: int = 1, memory_gib: float | None = None,
               refresh_s: float = REFRESH_S, name: str | None = None, progress=lambda _m: None) -> None:
    """Serve as a Dask worker of `scheduler` until interrupted (or the scheduler goes away)."""
    import asyncio

    require_distributed()
    from distributed import Worker

    if export_slots < 0:
        raise EdgekitError("--export-slots must be 0 or more")
    memory = default_memory_gib() if memory_gib is None else memory_gib
    if adb_server:
        os.environ[ADB_ENV] = adb_server

    async def serve() -> None:
        resources = worker_resources(adb_server, export_slots, memory)
        threads = max(1, export_slots + int(sum(v for k, v in resources.items() if k.startswith("phone-"))))
        async with Worker(scheduler, nthreads=max(threads, 4), resources=resources,
                          name=name or f"edgekit-{socket.gethostname()}-{os.getpid()}") as worker:
            progress(f"worker {worker.address} joined {scheduler}: {_describe(resources)}")
            while worker.status.name not in ("closing", "closed", "failed"):
                await asyncio.sleep(refresh_s)
                fresh = worker_resources(adb_server, export_slots, memory)
                if fresh != resources:
                    await worker.set_resources(**{**{k: 0.0 for k in resources}, **fresh})
                    resources = fresh
                    progress(f"resources now: {_describe(resources)}")

    try:
        asyncio.run(serve())
    except OSError as e:
        raise EdgekitError(f"cannot reach the scheduler {scheduler}: {e}") from None


def _describe(resources: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(resources.items()))


# ---- the tasks: run on a worker, by the local sweep's own code -------------------------------------
def _where() -> str:
    """The worker a task runs on, by name (`edgekit worker --name`, else host and process)."""
    from distributed import get_worker

    return str(get_worker().name)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def export_task(cell, opts, device_profile: str) -> dict:
    """Export one cell in a scratch folder here; return its artifact as bytes, and where it ran."""
    import dataclasses

    from edgekit.sweep import _export

    with tempfile.TemporaryDirectory(prefix="edgekit-cluster-") as tmp:
        manifest, _ = _export(cell, dataclasses.replace(opts, output=Path(tmp)), device_profile, lambda _m: None)
        artifact = {"name": Path(manifest.artifact_dir).name, "sha256": manifest.sha256,
                    "model_file": manifest.model_file, "worker": _where()}
        return {**artifact, **_carried(Path(manifest.artifact_dir), opts.store, manifest.sha256)}


def _carried(folder: Path, store: Path | None, sha: str) -> dict:
    """How an artifact travels: its files as bytes, or with a shared --store, the folder it was copied to
    there (atomically, named by its model's sha256)."""
    if store is None:
        return {"files": _files(folder)}
    stored = Path(store) / f"{folder.name}-{sha[:16]}"
    if not stored.exists():
        scratch = Path(tempfile.mkdtemp(prefix=f".{stored.name}.", dir=store))
        shutil.copytree(folder, scratch / "a")
        try:
            (scratch / "a").replace(stored)
        except OSError:  # another task stored the same artifact first
            pass
        shutil.rmtree(scratch, ignore_errors=True)
    return {"stored": str(stored)}


def profile_task(artifact: dict, device: str, opts) -> list[dict]:
    """Profile an artifact (as export_task returned it) on this machine's phones of `device` (a
    profile; "host": this machine); return the records, their artifact path left to the client."""
    from edgekit.profile import ProfileOptions, profile

    with tempfile.TemporaryDirectory(prefix="edgekit-cluster-") as tmp:
        folder = Path(artifact["stored"]) if "stored" in artifact else _write_files(Path(tmp), artifact)
        records = profile(ProfileOptions((folder,), device, opts.threads, None, opts.runs, opts.warmup,
                                         results=Path(tmp) / "results.jsonl",
                                         adb_server=os.environ.get(ADB_ENV) or opts.adb_server))
    return [{**r, "worker": _where()} for r in records]


def _write_files(root: Path, artifact: dict) -> Path:
    folder = root / artifact["name"]
    for rel, data in artifact["files"].items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


# ---- the client side ---------------------------------------------------------------------------------
def receive_artifact(output: Path, artifact: dict) -> Path:
    """Write an artifact that came through Dask into `output`, atomically (a scratch folder renamed
    into place), after checking its model file against the sha256 it was sent with."""
    from edgekit.artifacts import sha256

    output.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{artifact['name']}.", dir=output))
    try:
        if "stored" in artifact:  # through the shared --store folder
            artifact = {**artifact, "files": _files(Path(artifact["stored"]))}
        folder = _write_files(scratch, artifact)
        model = folder / artifact["model_file"]
        if sha256(model) != artifact["sha256"]:
            raise EdgekitError(f"{artifact['name']} arrived damaged (its model's sha256 differs from the sent one)")
        final = output / artifact["name"]
        old = None
        if final.exists():
            old = output / f".{artifact['name']}.old.{os.getpid()}"
            final.replace(old)
        folder.replace(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _offered(client) -> list[dict[str, float]]:
    return [w.get("resources", {}) for w in client.scheduler_info(n_workers=-1)["workers"].values()]


def sweep_on_cluster(cells: list, opts, results_path: Path, progress) -> list[dict]:
    """The sweep's rows, each cell's export and profile run on the cluster's workers (module docstring)."""
    require_distributed()
    from distributed import Client, as_completed

    from edgekit.export import artifact_name
    from edgekit.manifest import read_manifest
    from edgekit.profile import append_result, read_results, why_not_profiled
    from edgekit.registry import get_variant
    from edgekit.sweep import (
        _existing_artifact,
        _fill_from_manifest,
        _fill_from_record,
        _macs,
        _row,
        cell_options,
    )
    from edgekit.targets import get_target

    device = opts.device
    on_host = device == "host"
    phone = EXPORT if on_host else phone_resource(device)
    try:
        client = Client(opts.cluster, timeout="15s")
    except OSError as e:
        raise EdgekitError(f"cannot reach the scheduler {opts.cluster}: {e}") from None
    rows: dict = {}
    meta: dict = {}  # future -> (kind, cell, the manifest a profile is of)
    macs: dict = {}
    pending = as_completed()
    finished = 0

    def done_line(cell, row) -> None:
        nonlocal finished
        finished += 1
        where = ", ".join(x for x in (row.get("exported"), row.get("profiled")) if x)
        progress(f"[{finished}/{len(cells)}] {cell.label}: {row['status']}"
                 + (f" ({where})" if where else "") + (f": {row['error']}" if row.get("error") else ""))

    def measured(sha: str) -> list[dict]:
        return [r for r in read_results(results_path) if r.get("sha256") == sha
                and (r["device"]["profile"] == device)]

    def then_profile(cell, manifest, artifact=None) -> None:
        row = rows[cell]
        why = why_not_profiled(manifest, on_host)
        if why is not None:
            row["status"] = (f"exported; not profiled ({why})" if manifest.verification["passed"]
                             else "verification failed")
            done_line(cell, row)
            return
        records = measured(manifest.sha256)
        if records:
            _fill_from_record(row, records)
            row.update(profiled="from results.jsonl",
                       status="ok" if manifest.verification["passed"] else "verification failed")
            done_line(cell, row)
            return
        if not has_phone():
            row.update(status="profile failed", error=no_phone)
            done_line(cell, row)
            return
        payload = artifact or {"name": Path(manifest.artifact_dir).name, "model_file": manifest.model_file,
                               "sha256": manifest.sha256,
                               **_carried(Path(manifest.artifact_dir), opts.store, manifest.sha256)}
        future = client.submit(profile_task, payload, device, opts, resources={phone: 1}, retries=1, pure=False)
        meta[future] = ("profile", cell, manifest)
        pending.add(future)

    no_phone = f"no worker of {opts.cluster} has a {device} phone (resource {phone})"

    def has_phone() -> bool:
        return any(r.get(phone, 0) >= 1 for r in _offered(client))

    try:
        progress(f"cluster {opts.cluster}: {len(_offered(client))} workers; dashboard {client.dashboard_link}")
        for cell in cells:
            variant = get_variant(cell.variant)
            rows[cell] = _row(cell, _macs(cell.variant, cell.resolution, macs))
            if not on_host and get_target(cell.target).harness is not None and not has_phone():
                rows[cell].update(status="profile failed", error=no_phone)  # at once: nothing to export it for
                done_line(cell, rows[cell])
                continue
            options = cell_options(get_target(cell.target), opts.target_options, device)
            folder = Path(opts.output) / artifact_name(variant, cell.resolution, cell.target, cell.precision)
            manifest = _existing_artifact(folder, options)
            if manifest is not None:
                rows[cell]["exported"] = "reused"
                _fill_from_manifest(rows[cell], manifest)
                then_profile(cell, manifest)
                continue
            need = export_memory_gib(variant, cell.resolution)
            if not any(r.get(EXPORT, 0) >= 1 and r.get(MEMORY, 0) >= need for r in _offered(client)):
                rows[cell].update(status="export failed", error=f"no worker of {opts.cluster} offers an export "
                                                                 f"slot with {need:g} GiB")
                done_line(cell, rows[cell])
                continue
            future = client.submit(export_task, cell, opts, device, resources={EXPORT: 1, MEMORY: need}, retries=1,
                                   pure=False)
            meta[future] = ("export", cell, None)
            pending.add(future)
        workerless_since = None
        while not pending.is_empty():
            batch = pending.next_batch(block=False)
            if not batch:  # a cluster whose last worker is gone would keep this sweep's tasks forever
                if _offered(client):
                    workerless_since = None
                elif workerless_since is None:
                    workerless_since = time.monotonic()
                elif time.monotonic() - workerless_since > WORKERLESS_S:
                    lost = list(meta)
                    client.cancel(lost)
                    for future in lost:
                        kind, cell, _ = meta.pop(future)
                        rows[cell].update(status=f"{kind} failed", error=f"no worker left on {opts.cluster} (lost "
                                          "mid-cell): start one and run the same command again")
                        done_line(cell, rows[cell])
                    break
                time.sleep(0.2)
                continue
            for future in batch:
                kind, cell, manifest = meta.pop(future)
                row = rows[cell]
                try:
                    result = future.result()
                except Exception as e:  # noqa: BLE001 - one bad cell must not stop the grid: its reason goes in its row
                    from edgekit.errors import first_line

                    row.update(status=f"{kind} failed", error=first_line(e))
                    done_line(cell, row)
                    continue
                if kind == "export":
                    manifest = read_manifest(receive_artifact(Path(opts.output), result))
                    row["exported"] = f"exported on {result['worker']}"
                    _fill_from_manifest(row, manifest)
                    then_profile(cell, manifest, result)
                    continue
                local = str(Path(manifest.artifact_dir))
                for record in result:
                    append_result(results_path, {**record, "artifact": local})
                _fill_from_record(row, result)
                row.update(profiled=f"measured on {result[0]['worker']}" if result else None,
                           status=("ok" if manifest.verification["passed"] else "verification failed") if result
                           else "profile failed")
                done_line(cell, row)
    except KeyboardInterrupt:
        client.cancel(list(meta))  # this sweep's tasks only; finished cells are on disk
        raise
    finally:
        client.close()
    return [rows[c] for c in cells]


def sweep_cluster(opts, progress=lambda _m: None) -> dict:
    """`edgekit sweep --cluster`: the grid on a Dask cluster's workers; --device is a profile there, not a
    phone here. Returns what edgekit.sweep.sweep returns."""
    from edgekit.android_harness.profiles import PROFILES
    from edgekit.profile import RESULTS
    from edgekit.sweep import _result, plan

    require_distributed()
    if opts.device != "host" and opts.device not in PROFILES:
        raise EdgekitError(f"--device {opts.device} with --cluster: name a phone profile ({', '.join(PROFILES)}) or "
                           "host; the workers' phones are found by profile")
    if opts.eval_data is not None:
        raise EdgekitError("--eval-data is not taken with --cluster yet: score the artifacts with `edgekit eval` "
                           "after the sweep")
    if opts.runs < 1 or opts.warmup < 0:
        raise EdgekitError("--runs must be >= 1 and --warmup >= 0")
    if opts.store is not None and not Path(opts.store).is_dir():
        raise EdgekitError(f"--store {opts.store} is not a folder (a folder every worker and this machine share)")
    cells = plan(opts)
    results_path = Path(opts.output) / RESULTS
    rows = sweep_on_cluster(cells, opts, results_path, progress)
    return _result(rows, opts, opts.device, sorted({p for r in rows for p in (r["phones"] or {})}), results_path, {})
