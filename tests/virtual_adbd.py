"""A virtual Android device that speaks the adb wire protocol on a loopback TCP port.

The real `adb` server connects to it (`adb connect 127.0.0.1:PORT`) exactly as to a phone in TCP/IP
mode: CNXN handshake (or an AUTH challenge it never accepts, for "unauthorized"), the legacy
`shell:` service and the `sync:` service (STAT, SEND/DATA/DONE, RECV, LIST, QUIT). Shell commands
run on this host with `sh` in a sandbox folder that stands in for the device's filesystem: every
path under /data/local/tmp maps into it, `getprop` answers from the device's properties and
`taskset` records the mask and runs the rest. Pushed programs run for real (the host harness stands
in for the arm64 benchmark_model).

Faults for tests: `mode="unauthorized"` (AUTH forever), `mode="offline"` (never completes the
handshake), `drop_on` (a substring: the connection is cut when a shell command containing it
starts, i.e. the phone disconnects mid-run; with `drop_after=N`, once, after N such commands ran:
it can be reconnected) and `drop_on_push` (the same when a file whose device
path contains it is being pushed). `log` records each shell command with its start and end times,
so tests can see that several phones really ran at once.
"""

from __future__ import annotations

import os
import shlex
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

A_SYNC, A_CNXN, A_OPEN, A_OKAY = 0x434E5953, 0x4E584E43, 0x4E45504F, 0x59414B4F
A_CLSE, A_WRTE, A_AUTH = 0x45534C43, 0x45545257, 0x48545541
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
DEVICE_ROOT = "/data/local/tmp"

SM8450_PROPS = {
    "ro.product.manufacturer": "samsung",
    "ro.product.model": "SM-S901B",
    "ro.product.name": "r0sxxx",
    "ro.product.device": "r0s",
    "ro.soc.manufacturer": "QTI",
    "ro.soc.model": "SM8450",
    "ro.board.platform": "taro",
    "ro.hardware": "qcom",
    "ro.build.version.sdk": "33",
    "ro.build.version.release": "13",
    "ro.product.cpu.abi": "arm64-v8a",
}


def _header(cmd: int, arg0: int, arg1: int, data: bytes) -> bytes:
    return struct.pack("<6I", cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF)


class _Closed(Exception):
    pass


class VirtualDevice:
    def __init__(self, sandbox: Path, props: dict[str, str] | None = None, mode: str = "device",
                 drop_on: str | None = None, drop_on_push: str | None = None, drop_after: int = 0):
        self.sandbox = Path(sandbox)
        self.props = dict(SM8450_PROPS if props is None else props)
        self.mode = mode
        self.drop_on = drop_on
        self.drop_on_push = drop_on_push
        self.drop_after = drop_after  # `drop_on` lets this many matching commands run, then drops once
        self._matched = 0
        self.commands: list[str] = []  # every shell command received, verbatim
        self.log: list[tuple[float, float, str]] = []  # (start, end, command), time.monotonic()
        (self.sandbox / DEVICE_ROOT.lstrip("/")).mkdir(parents=True, exist_ok=True)
        self._bin = self.sandbox / "system" / "bin"
        self._bin.mkdir(parents=True, exist_ok=True)
        self._write_tools()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(4)
        self.port = self._server.getsockname()[1]
        self.serial = f"127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    # ---- the device's own tools -------------------------------------------------------------
    def _write_tools(self) -> None:
        props = "\n".join(f"[{k}]: [{v}]" for k, v in sorted(self.props.items()))
        (self.sandbox / "props.txt").write_text(props + "\n")
        getprop = self._bin / "getprop"
        getprop.write_text(
            "#!/bin/sh\n"
            f'if [ -z "$1" ]; then cat {shlex.quote(str(self.sandbox / "props.txt"))}; exit 0; fi\n'
            f'sed -n "s/^\\[$1\\]: \\[\\(.*\\)\\]$/\\1/p" {shlex.quote(str(self.sandbox / "props.txt"))}\n'
        )
        taskset = self._bin / "taskset"
        taskset.write_text(
            "#!/bin/sh\n"
            f'echo "$1" >> {shlex.quote(str(self.sandbox / "taskset.log"))}\n'
            'shift\nexec "$@"\n'
        )
        for tool in (getprop, taskset):
            tool.chmod(0o755)

    def device_path(self, path: str) -> Path:
        """Where a device path lives in the sandbox."""
        return self.sandbox / path.lstrip("/")

    def _to_sandbox(self, text: str) -> str:
        return text.replace(DEVICE_ROOT, str(self.sandbox / DEVICE_ROOT.lstrip("/")))

    # ---- transport ------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        for s in [self._server, *self._conns]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _serve(self, conn: socket.socket) -> None:
        streams: dict[int, dict] = {}
        lock = threading.Lock()
        next_id = [1]

        def recv_exact(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = conn.recv(n - len(buf))
                if not chunk:
                    raise _Closed
                buf += chunk
            return buf

        def send(cmd: int, arg0: int, arg1: int, data: bytes = b"") -> None:
            with lock:
                conn.sendall(_header(cmd, arg0, arg1, data) + data)

        try:
            while True:
                cmd, arg0, arg1, length, _check, _magic = struct.unpack("<6I", recv_exact(24))
                data = recv_exact(length) if length else b""
                if cmd == A_CNXN:
                    if self.mode == "offline":
                        continue  # never answers: adb lists the device as offline
                    if self.mode == "unauthorized":
                        send(A_AUTH, 1, 0, os.urandom(20))  # a TOKEN no key will ever satisfy
                        continue
                    banner = (f"device::ro.product.name={self.props['ro.product.name']};"
                              f"ro.product.model={self.props['ro.product.model']};"
                              f"ro.product.device={self.props['ro.product.device']};features=cmd")
                    send(A_CNXN, A_VERSION, MAX_PAYLOAD, banner.encode())
                elif cmd == A_AUTH:
                    if arg0 == 2:  # a signature: refuse it with a fresh token
                        send(A_AUTH, 1, 0, os.urandom(20))
                    # a public key (3) waits for the user's "allow", which never comes
                elif cmd == A_OPEN:
                    local = next_id[0]
                    next_id[0] += 1
                    service = data.rstrip(b"\0").decode()
                    stream = {"remote": arg0, "acked": threading.Event(), "buf": b"", "service": service}
                    streams[local] = stream
                    send(A_OKAY, local, arg0)
                    if service.startswith("shell:"):
                        threading.Thread(target=self._shell, args=(service[6:], stream, local, send, conn),
                                         daemon=True).start()
                    elif service != "sync:":
                        send(A_CLSE, local, arg0)
                elif cmd == A_OKAY:
                    if arg1 in streams:
                        streams[arg1]["acked"].set()
                elif cmd == A_WRTE:
                    send(A_OKAY, arg1, arg0)
                    stream = streams.get(arg1)
                    if stream and stream["service"] == "sync:":
                        stream["buf"] += data
                        self._sync(stream, arg1, send)
                elif cmd == A_CLSE:
                    stream = streams.pop(arg1, None)
                    if stream:
                        send(A_CLSE, arg1, stream["remote"])
        except (_Closed, OSError):
            pass
        finally:
            conn.close()

    def _write(self, stream: dict, local: int, send, payload: bytes) -> None:
        for i in range(0, len(payload), MAX_PAYLOAD):
            stream["acked"].clear()
            send(A_WRTE, local, stream["remote"], payload[i : i + MAX_PAYLOAD])
            if not stream["acked"].wait(30):
                raise _Closed

    # ---- services -------------------------------------------------------------------------------
    def _shell(self, command: str, stream: dict, local: int, send, conn: socket.socket) -> None:
        self.commands.append(command)
        try:
            if self.drop_on and self.drop_on in command:
                self._matched += 1
                if self._matched == self.drop_after + 1:
                    conn.shutdown(socket.SHUT_RDWR)  # the phone vanishes mid-run
                    return
            env = {"PATH": f"{self._bin}:/usr/bin:/bin", "HOME": str(self.sandbox),
                   "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
            started = time.monotonic()
            done = subprocess.run(["sh", "-c", self._to_sandbox(command)], cwd=self.sandbox, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
            self.log.append((started, time.monotonic(), command))
            output = done.stdout.replace(str(self.sandbox / DEVICE_ROOT.lstrip("/")).encode(),
                                         DEVICE_ROOT.encode())
            if output:
                self._write(stream, local, send, output)
            send(A_CLSE, local, stream["remote"])
        except (_Closed, OSError):
            pass

    def _sync(self, stream: dict, local: int, send) -> None:
        """Handle every complete sync request in the stream's buffer."""
        out = b""
        while True:
            buf = stream["buf"]
            if "pending" in stream:  # inside a SEND: DATA chunks until DONE
                if len(buf) < 8:
                    break
                sid, n = buf[:4], struct.unpack("<I", buf[4:8])[0]
                if sid == b"DATA":
                    if len(buf) < 8 + n:
                        break
                    stream["pending"][1].append(buf[8 : 8 + n])
                    stream["buf"] = buf[8 + n :]
                    continue
                stream["buf"] = buf[8:]
                path, chunks, mode = stream.pop("pending")
                if sid == b"DONE":
                    target = self.device_path(path)
                    try:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(b"".join(chunks))
                        target.chmod(mode & 0o777)
                        out += b"OKAY" + struct.pack("<I", 0)
                    except OSError as e:
                        msg = str(e).encode()
                        out += b"FAIL" + struct.pack("<I", len(msg)) + msg
                continue
            if len(buf) < 8:
                break
            sid, n = buf[:4], struct.unpack("<I", buf[4:8])[0]
            if len(buf) < 8 + n:
                break
            arg = buf[8 : 8 + n].decode()
            stream["buf"] = buf[8 + n :]
            if sid == b"STAT":
                p = self.device_path(arg)
                if p.exists():
                    st = p.stat()
                    out += b"STAT" + struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))
                else:
                    out += b"STAT" + struct.pack("<III", 0, 0, 0)
            elif sid == b"SEND":
                path, _, mode = arg.rpartition(",")
                if self.drop_on_push and self.drop_on_push in path:
                    raise _Closed  # the phone vanishes mid-push
                stream["pending"] = (path, [], int(mode or "420"))
            elif sid == b"RECV":
                p = self.device_path(arg)
                if p.is_file():
                    data = p.read_bytes()
                    for i in range(0, len(data), 64 * 1024):
                        chunk = data[i : i + 64 * 1024]
                        out += b"DATA" + struct.pack("<I", len(chunk)) + chunk
                    out += b"DONE" + struct.pack("<I", 0)
                else:
                    msg = b"No such file or directory"
                    out += b"FAIL" + struct.pack("<I", len(msg)) + msg
            elif sid == b"LIST":
                p = self.device_path(arg)
                for child in sorted(p.iterdir()) if p.is_dir() else []:
                    st = child.stat()
                    name = child.name.encode()
                    out += b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size, int(st.st_mtime), len(name)) + name
                out += b"DONE" + struct.pack("<IIII", 0, 0, 0, 0)
            elif sid == b"QUIT":
                send(A_CLSE, local, stream["remote"])
                return
            else:
                msg = f"unsupported sync request {sid!r}".encode()
                out += b"FAIL" + struct.pack("<I", len(msg)) + msg
        if out:
            threading.Thread(target=self._write, args=(stream, local, send, out), daemon=True).start()
