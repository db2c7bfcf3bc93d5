"""Artifact directories and other outputs: written atomically; files identified by sha256."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from edgekit.errors import EdgekitError

ARTIFACTS_DIR = Path("edgekit-artifacts")  # where export writes and profile and sweep look by default
TOOLS = ("edgekit", "torch", "numpy")  # every artifact; each target adds its converters and runtimes


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def sha256(path: Path) -> str:
    """Of a file, or of a package directory (each file's relative path and bytes, in sorted order)."""
    h = hashlib.sha256()
    for file in _files(path):
        if path.is_dir():
            h.update(str(file.relative_to(path)).encode())
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in _files(path))


def tool_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    versions = {}
    for name in dict.fromkeys((*TOOLS, *extra)):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_writable(parent: Path, create: bool = True) -> None:
    """Fail before any work if the output folder cannot take a new artifact. `create=False` checks
    without creating anything (the nearest existing folder must be a writable folder)."""
    for folder in (Path(parent), *Path(parent).parents):
        if folder.exists():
            if not folder.is_dir():
                raise EdgekitError(f"output {parent} is not a folder: {folder} is a file (choose another --output)")
            if not create:
                if not os.access(folder, os.W_OK | os.X_OK):
                    raise EdgekitError(f"output folder {parent} is not writable ({folder} is not writable)")
                return
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        why = "it cannot be created there" if not Path(parent).exists() else (e.strerror or str(e))
        raise EdgekitError(f"output folder {parent} is not writable ({why})") from e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _remove_orphans(final: Path) -> None:
    """Temp folders of `final` whose writer was killed (SIGKILL, power loss) before its rename: the
    writer's pid is in the name, so a live concurrent writer's folder is never touched."""
    for tmp in final.parent.glob(f".{final.name}.*.*"):
        pid = tmp.name[len(final.name) + 2:].split(".", 1)[0]
        if tmp.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(final: Path, overwrite: bool = True):
    """Yield a temporary sibling of `final`; on success it replaces `final` in one rename, on any
    failure it is removed, so a reader never sees a half-written artifact."""
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; an artifact is an ordinary folder
    try:
        yield tmp
        if final.exists():
            if not overwrite:
                raise EdgekitError(f"{final} already exists")
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)

