"""Phones: which ones `--device` names, a session on one (lock, push, run, pull, clean up), and the
same work on several at once. Orchestration over edgekit.android_harness (adb, the profiles, the
harness type), which knows no target.

`--device` is `host`, a profile name (every connected phone of that SoC), `all` (every connected
phone with a known profile), an adb serial, or a comma list of serials. Every phone is reached
through one adb server (`--adb-server HOST:PORT`, else ADB_SERVER_SOCKET, else adb's default), and is
held by this run alone for as long as it works on it (edgekit.locks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from edgekit.android_harness.adb import Adb, DeviceLost, _state_error, quote
from edgekit.android_harness.harnesses import Harness, RunSettings
from edgekit.android_harness.profiles import HOST, PROFILES, DeviceProfile, get_profile, profile_for
from edgekit.errors import EdgekitError

DEVICE_DIR = "/data/local/tmp/edgekit"
Progress = Callable[[str], None]
T = TypeVar("T")


@dataclass
class Target:
    profile: DeviceProfile
    serial: str | None  # None: the host
    props: dict[str, str] = field(default_factory=dict)
    server: str | None = None  # the adb server it is reached through

    def describe(self) -> dict:
        """What every record says about the phone (or the host)."""
        return {"profile": self.profile.name, "serial": self.serial, "model": self.props.get("ro.product.model"),
                "soc": self.props.get("ro.soc.model"), "core_mask": self.profile.core_mask,
                **({"adb_server": self.server} if self.serial is not None else {})}


def _known(adb: Adb, serial: str) -> Target:
    adb.device(serial)  # raises for unauthorized/offline/absent
    props = adb.getprop(serial)
    profile = profile_for(props)
    if profile is None:
        raise EdgekitError(f"device {serial} (SoC {props.get('ro.soc.model') or props.get('ro.board.platform')}) "
                           f"matches no profile; known: {', '.join(PROFILES)}")
    return Target(profile, serial, props, adb.server)


def resolve_devices(device: str, adb: Adb | None = None, progress: Progress = lambda _m: None) -> list[Target]:
    """The phones `--device` names (see the module docstring), each checked ready and of a known profile."""
    if device == "host":
        return [Target(HOST, None)]
    adb = adb or Adb()
    connected = adb.devices()
    by_serial = {d.serial: d for d in connected}
    if "," in device or device in by_serial:
        serials = [s.strip() for s in device.split(",") if s.strip()]
        if len(set(serials)) != len(serials):
            raise EdgekitError(f"--device {device} names a phone twice")
        missing = [s for s in serials if s not in by_serial]
        if missing:
            raise EdgekitError(f"device {missing[0]} is not connected to the adb server {adb.server} "
                               "(see `edgekit devices`)")
        return [_known(adb, s) for s in serials]
    if device != "all":
        if device not in PROFILES:  # neither a connected phone's serial nor a profile's name
            raise EdgekitError(f"--device {device}: no phone with this serial is connected to the adb server "
                               f"{adb.server} ({len(connected)} connected: `edgekit devices` lists them), and no "
                               f"device profile has this name (profiles: host, {', '.join(PROFILES)})")
        profile = get_profile(device)
    if not connected:
        raise EdgekitError(f"no device connected to the adb server {adb.server} (adb devices lists none)")
    found, not_ready = [], []
    for d in connected:
        if d.state != "device":
            not_ready.append(d)
            continue
        props = adb.getprop(d.serial)
        known = profile_for(props)
        if device == "all" and known is None:
            progress(f"skipping {d.serial}: its SoC ({props.get('ro.soc.model') or '?'}) matches no profile")
        elif known is not None and (device == "all" or known is profile):
            found.append(Target(known, d.serial, props, adb.server))
    for d in not_ready:
        progress(f"skipping {d.serial}: it is {d.state}")
    if not found:
        if not_ready:
            raise _state_error(not_ready[0])
        what = "with a known profile" if device == "all" else f"of profile {device} ({profile.description})"
        raise EdgekitError(f"no connected device {what}")
    return found


# ---- a session on one phone ----------------------------------------------------------------------------
class PhoneSession:
    """The harness and an artifact's files pushed to DEVICE_DIR on one phone, which this run holds
    (a lock per serial) until the session ends; then the folder is removed unless `keep`."""

    def __init__(self, adb: Adb, target: Target, harness: Harness, binary: Path, libraries: dict[str, Path],
                 model_files: list[tuple[Path, str]], keep: bool, progress: Progress, lock_dir: Path):
        self.adb, self.target, self.harness = adb, target, harness
        self.binary, self.libraries, self.model_files = binary, libraries, model_files
        self.keep, self.progress, self.lock_dir = keep, progress, lock_dir
        self.serial = target.serial
        self._lock = None

    @property
    def model(self) -> str:
        return f"{DEVICE_DIR}/{self.model_files[0][1]}"

    def __enter__(self) -> PhoneSession:
        from edgekit.locks import phone_lock

        self._lock = phone_lock(self.lock_dir, self.adb.server, self.serial)
        self._lock.__enter__()
        try:
            self._setup()
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def _setup(self) -> None:
        serial, remote = self.serial, f"{DEVICE_DIR}/{self.harness.binary}"
        code, out = self.adb.shell(serial, f"mkdir -p {DEVICE_DIR}")
        if code != 0:
            raise EdgekitError(f"cannot create {DEVICE_DIR} on {serial}: {out.strip()}")
        self.progress(f"pushing {self.harness.name} and {self.model_files[0][0].parent.name} to {serial}")
        self.adb.push(serial, self.binary, remote)
        for name, local in sorted(self.libraries.items()):
            self.adb.push(serial, local, f"{DEVICE_DIR}/{name}")
        for local, name in self.model_files:
            self.adb.push(serial, local, f"{DEVICE_DIR}/{name}")
        code, out = self.adb.shell(serial, f"chmod 755 {quote(remote)}")
        if code != 0:
            raise EdgekitError(f"chmod failed on {serial}: {out.strip()}")

    def run(self, flags: list[str]) -> tuple[int, str]:
        """(exit status, output) of the harness with `flags`, pinned to the profile's big cores."""
        pin = f"taskset {self.target.profile.core_mask} " if self.target.profile.core_mask else ""
        env = self.harness.env.format(dir=DEVICE_DIR) + " " if self.harness.env else ""
        binary = quote(f"{DEVICE_DIR}/{self.harness.binary}")
        return self.adb.shell(self.serial, f"cd {DEVICE_DIR} && {env}{pin}{binary} " + " ".join(map(quote, flags)))

    def flags(self, run: RunSettings) -> list[str]:
        return self.harness.flags(self.model, run, DEVICE_DIR)

    def __exit__(self, *exc) -> None:
        try:
            if not self.keep:
                try:
                    self.adb.shell(self.serial, f"rm -rf {DEVICE_DIR}", timeout=60)
                except DeviceLost:
                    pass  # the device is gone; nothing left to clean from here
        finally:
            if self._lock is not None:
                self._lock.__exit__(*exc)
                self._lock = None


# ---- several phones at once ------------------------------------------------------------------------------
@dataclass
class PhoneOutcome:
    target: Target
    result: object = None
    error: str | None = None  # one line: why this phone failed (the others carry on)


def on_phones(targets: list[Target], work: Callable[[Target], T], progress: Progress) -> list[PhoneOutcome]:
    """`work(target)` on every target at the same time, one thread per phone. Of several, a phone that
    fails (lost mid-run, a runner crash, a lock held elsewhere) fails alone: its one-line error is kept
    and the others finish. One target (the host, or a single phone) runs inline and its error is the
    command's. Ctrl-C is not caught."""
    if len(targets) == 1:
        return [PhoneOutcome(targets[0], work(targets[0]))]
    outcomes = [PhoneOutcome(t) for t in targets]

    def worker(outcome: PhoneOutcome) -> None:
        try:
            outcome.result = work(outcome.target)
        except EdgekitError as e:
            outcome.error = str(e)
        except Exception as e:  # noqa: BLE001 - one phone's failure must not take the others down
            outcome.error = f"{type(e).__name__}: {e}"
        if outcome.error:
            progress(f"{outcome.target.serial} failed: {outcome.error}")

    threads = [threading.Thread(target=worker, args=(o,), name=f"edgekit-{o.target.serial}", daemon=True)
               for o in outcomes]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)  # a short join keeps Ctrl-C deliverable to the main thread
    return outcomes


# ---- what a multi-phone run's records mean for the command ----------------------------------------------
@dataclass(frozen=True)
class RunVerdict:
    """A command's exit code and its one error line (None when it passed) from its per-phone records."""

    exit_code: int = 0
    error: str | None = None


def failed_phones(records: list[dict]) -> list[dict]:
    """The records of phones that failed (the others' results stand)."""
    return [r for r in records if "failed" in r]


def measured(records: list[dict]) -> list[dict]:
    """The records that hold a measurement: neither a failed phone nor a skipped artifact."""
    return [r for r in records if "failed" not in r and "skipped" not in r]


def _phones_failed_line(failed: list[dict], of: int | None = None) -> str:
    """"2 phones failed: SERIAL: why" (or "2 of 3 phones failed: ..."), naming the first."""
    count = f"{len(failed)} of {of} phones" if of else f"{len(failed)} phone{'s' if len(failed) > 1 else ''}"
    return f"{count} failed: {failed[0]['device']['serial']}: {failed[0]['failed']}"


def profile_verdict(records: list[dict]) -> RunVerdict:
    """`edgekit profile`: exit 1 when a measurement could not be recorded, an artifact named was not
    profiled, or a phone failed; the measurements that were made are printed either way."""
    unsaved = [r for r in records if r.get("results_error")]
    if unsaved:
        return RunVerdict(1, unsaved[0]["results_error"])
    skipped = [r for r in records if "skipped" in r and r.get("named", True)]
    if skipped:
        return RunVerdict(1, f"{len(skipped)} of the artifacts named {'was' if len(skipped) == 1 else 'were'} not "
                             f"profiled: {skipped[0]['skipped']}")
    failed = failed_phones(records)
    return RunVerdict(1, _phones_failed_line(failed)) if failed else RunVerdict()


def device_verify_verdict(result: dict) -> RunVerdict:
    """`edgekit verify --device`: exit 3 when a phone's outputs missed the tolerance, 1 when a phone failed."""
    bad = [r for r in result["devices"] if not r["verification"]["passed"]]
    if bad:
        r = bad[0]
        return RunVerdict(3, f"verification failed on {r['device']['serial']}: "
                             + "; ".join(r["verification"]["failures"]))
    failed = result["failed"]
    return RunVerdict(1, _phones_failed_line(failed, len(failed) + len(result["devices"]))) if failed else RunVerdict()
