"""The real `adb` client, driven as a subprocess (Debian package `adb`, or Android platform-tools).

Which adb server it talks to: `--adb-server HOST:PORT` (passed to adb as ADB_SERVER_SOCKET=tcp:HOST:PORT),
else what adb itself reads: ADB_SERVER_SOCKET (a phone lab behind one server: DeviceFarmer/STF, or
`adb -a` on a lab machine), ANDROID_ADB_SERVER_PORT (a private local server; the tests use both), or
adb's default tcp:localhost:5037. `Adb.server` names it in every record. Shell commands report their
exit status through a marker line, because the legacy `shell:` service many devices and adb versions
use carries no exit code.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import EdgekitError

EXIT_MARKER = "__EDGEKIT_EXIT="
_PROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")


class DeviceLost(EdgekitError):
    pass


@dataclass
class Device:
    serial: str
    state: str  # device | unauthorized | offline | ...
    info: dict[str, str] = field(default_factory=dict)  # product/model/device from `adb devices -l`


def adb_binary() -> str:
    explicit = os.environ.get("EDGEKIT_ADB")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise EdgekitError(f"adb not found: EDGEKIT_ADB={explicit} is not an executable file")
        return explicit
    found = shutil.which("adb")
    if not found:
        raise EdgekitError("adb not found: install Android platform-tools (Debian/Ubuntu: apt-get install adb)")
    return found


def _state_error(device: Device) -> EdgekitError:
    if device.state == "unauthorized":
        return EdgekitError(f"device {device.serial} is unauthorized: unlock the phone and accept the "
                            "'Allow USB debugging' prompt, then retry")
    if device.state == "offline":
        return EdgekitError(f"device {device.serial} is offline: reconnect it (or `adb reconnect`) and retry")
    return EdgekitError(f"device {device.serial} is {device.state}, not ready")


def server_socket(server: str | None) -> str | None:
    """`--adb-server HOST:PORT` as adb's ADB_SERVER_SOCKET value (tcp:HOST:PORT); None: not given."""
    if server is None:
        return None
    text = server.removeprefix("tcp:")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgekitError(f"--adb-server {server}: give HOST:PORT (e.g. lab-host:5037)")
    return f"tcp:{host}:{port}"


def describe_server(socket: str | None = None) -> str:
    """The adb server this process talks to, as adb resolves it."""
    if socket:
        return socket
    if os.environ.get("ADB_SERVER_SOCKET"):
        return os.environ["ADB_SERVER_SOCKET"]
    return f"tcp:localhost:{os.environ.get('ANDROID_ADB_SERVER_PORT') or 5037}"


class Adb:
    def __init__(self, binary: str | None = None, timeout: float = 900, server: str | None = None):
        self.binary = binary or adb_binary()
        self.timeout = timeout
        self._socket = server_socket(server)
        self.server = describe_server(self._socket)
        self._env = None
        if self._socket:  # what adb itself reads; it wins over ANDROID_ADB_SERVER_PORT
            self._env = {**os.environ, "ADB_SERVER_SOCKET": self._socket}
            self._env.pop("ANDROID_ADB_SERVER_PORT", None)

    def _run(self, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.binary, *args], capture_output=True, text=True, errors="replace",
                                  timeout=timeout or self.timeout, env=self._env)
        except subprocess.TimeoutExpired as e:
            raise DeviceLost(f"adb {' '.join(args[:3])} timed out after {e.timeout:.0f} s") from None

    def devices(self) -> list[Device]:
        done = self._run(["devices", "-l"], timeout=60)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout or "no output").strip().splitlines() or ["no output"]
            raise EdgekitError(f"adb devices failed: {lines[-1]}")
        found = []
        for line in done.stdout.splitlines():
            line = line.strip()
            if not line or line.startswith(("List of devices", "*")):
                continue
            parts = line.split()
            if len(parts) < 2:
                continue
            info = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
            found.append(Device(parts[0], parts[1], info))
        return found

    def device(self, serial: str) -> Device:
        for d in self.devices():
            if d.serial == serial:
                if d.state != "device":
                    raise _state_error(d)
                return d
        raise DeviceLost(f"device {serial} is not connected (see `edgekit devices`)")

    def shell(self, serial: str, command: str, timeout: float | None = None) -> tuple[int, str]:
        """Run `command` in the device's shell: (exit status, combined output without the marker)."""
        done = self._run(["-s", serial, "shell", f"{command}; echo {EXIT_MARKER}$?"], timeout)
        text = done.stdout
        match = re.search(rf"{EXIT_MARKER}(\d+)\s*$", text)
        if not match:
            # no marker: the connection died before the command finished
            detail = (done.stderr.strip() or "connection closed").splitlines()[-1]
            raise DeviceLost(f"lost device {serial} while running a command ({detail})")
        return int(match[1]), text[: match.start()]

    def getprop(self, serial: str) -> dict[str, str]:
        code, text = self.shell(serial, "getprop", timeout=60)
        if code != 0:
            raise EdgekitError(f"getprop failed on {serial}")
        return {m[1]: m[2] for m in (_PROP.match(line.strip()) for line in text.splitlines()) if m}

    def push(self, serial: str, local: Path, remote: str) -> None:
        done = self._run(["-s", serial, "push", str(local), remote])
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip() or "failed").splitlines()[-1]
            raise DeviceLost(f"adb push {Path(local).name} to {serial} failed: {detail}")

    def pull(self, serial: str, remote: str, local: Path) -> None:
        done = self._run(["-s", serial, "pull", remote, str(local)])
        if done.returncode != 0 or not Path(local).is_file():
            detail = (done.stderr.strip() or done.stdout.strip() or "failed").splitlines()[-1]
            raise DeviceLost(f"adb pull {remote} from {serial} failed: {detail}")


def quote(path: str) -> str:
    """A device path for the device's sh (spaces, quotes and all)."""
    return shlex.quote(path)
