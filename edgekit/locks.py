"""Locks between edgekit runs (and the threads of one run): a phone is used by one run at a time,
and a shared file (results.jsonl, a manifest) is read-modified-written by one writer at a time.

Both are `flock` locks (on a lock file per phone in edgekit's cache; on the folder of a shared
file), which the kernel releases when the process ends however it ends (Ctrl-C, a kill, a crash):
no stale lock is ever left to clean up. Within one process, flock on two
separate descriptors of the same file would also exclude each other, but a thread lock in front
keeps the threads of one run orderly and the error message exact.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from edgekit.errors import EdgekitError

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def _thread_lock(key: str) -> threading.Lock:
    with _GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive, blocking: for the short read-modify-write of a shared file. The lock is held on the
    folder the file is in (the file itself is replaced by rename, so it cannot carry the lock, and a
    sidecar lock file would be left behind next to the user's files)."""
    folder = Path(path).resolve().parent
    with _thread_lock(str(folder)):
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock


@contextlib.contextmanager
def phone_lock(folder: Path, server: str, serial: str) -> Iterator[None]:
    """Hold the phone `serial` behind adb server `server` for this run (a lock file in `folder`), or
    fail at once with one line naming the run that holds it (never wait: a benchmark beside another
    benchmark measures neither)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{server}-{serial}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    lock = _thread_lock(str(path))
    if not lock.acquire(blocking=False):
        raise EdgekitError(f"phone {serial} is already in use by this edgekit run")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise EdgekitError(f"phone {serial} is in use by another edgekit run (pid {holder}); wait for it "
                                   "to finish") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)
    finally:
        lock.release()
