"""Converters' and frameworks' own output: kept out of the user's terminal by default, shown with
`--verbose` (or `--debug`), and attached to the error when a conversion fails.

TensorFlow, LiteRT, coremltools, onnxruntime and executorch write from C++ straight to file
descriptors 1 and 2 (absl's "All log messages before absl::InitializeLog()", "oneDNN custom
operations are on", "Created TensorFlow Lite XNNPACK delegate"), and from Python through warnings,
loggers and tqdm bars. `quiet_process()`, called once by the `edgekit` command before any framework
loads, points descriptors 1 and 2 at a capture file while Python's own sys.stdout/sys.stderr (what
edgekit prints: tables, JSON, progress, errors) keep writing to the terminal, and silences the
Python-level channels. Nothing is lost: the captured text is printed with --verbose, and on a crash
the file is kept and named.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Mapping

VERBOSE_ENV = "EDGEKIT_VERBOSE"
# Environment settings read when a framework loads, to keep it quiet unless asked. Each target declares
# its frameworks' own (TargetSpec.quiet_env: TensorFlow's log level, ONNX Runtime's, progress bars);
# the edgekit command passes them all to quiet_process. This one is Python's, for every subprocess.
QUIET_ENV = {"PYTHONWARNINGS": "ignore"}


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def show(source: str, text: str) -> None:
    """A framework's captured output on stderr, when the user asked to see it."""
    if verbose() and text.strip():
        sys.stderr.write(f"--- {source} ---\n{text.rstrip()}\n--- end of {source} ---\n")


@contextlib.contextmanager
def captured(source: str, buffer: io.StringIO):
    """Around a converter whose stdout goes into `buffer`: the captured text is shown afterwards
    with --verbose (whether the converter succeeded or failed)."""
    try:
        yield buffer
    finally:
        show(source, buffer.getvalue())


@contextlib.contextmanager
def quiet_output(source: str):
    """Descriptors 1 and 2 into a temporary file around a call into a C++ library that prints (the
    executorch runtime's cpuinfo lines, say), shown afterwards with --verbose. The edgekit command
    already captures both for the whole process; this keeps library callers quiet too."""
    if verbose():
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = (os.dup(1), os.dup(2))
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        # and Python's own streams: executorch's pybindings print their C++ log through sys.stderr,
        # which under the edgekit command is the terminal, not descriptor 2
        text = io.TextIOWrapper(os.fdopen(os.dup(tmp.fileno()), "wb"), errors="replace", write_through=True)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        finally:
            text.close()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _silence_python_channels() -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    # every logger at WARNING and below, whatever level a framework sets on import (torch resets its
    # own when it loads); edgekit itself does not log, and errors still show
    logging.disable(logging.WARNING)


class _Capture:
    """Descriptors 1 and 2 redirected to a file; Python's streams on the saved terminal copies."""

    def __init__(self):
        self.file = tempfile.NamedTemporaryFile(prefix="edgekit-native-", suffix=".log", delete=False)
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        sys.stdout = io.TextIOWrapper(os.fdopen(self.saved[0], "wb", buffering=0), write_through=True,
                                      encoding=sys.stdout.encoding, errors="replace", line_buffering=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(self.saved[1], "wb", buffering=0), write_through=True,
                                      encoding=sys.stderr.encoding, errors="backslashreplace", line_buffering=True)
        os.dup2(self.file.fileno(), 1)
        os.dup2(self.file.fileno(), 2)

    def finish(self, crashed: bool) -> None:
        """Remove the capture file, or on a crash say where it is (it may hold the cause)."""
        self.file.close()
        if crashed and os.path.getsize(self.file.name):
            sys.stderr.write(f"(the frameworks' own output is in {self.file.name})\n")
        else:
            os.unlink(self.file.name)


def quiet_process(frameworks_env: Mapping[str, str] = {}) -> _Capture | None:  # noqa: B006 - read only
    """Quiet the frameworks for the rest of this process (unless --verbose): `frameworks_env`, what
    the targets' frameworks read (edgekit.targets.quiet_env()), is set unless the user set it; returns
    the capture to finish at exit, or None when nothing was redirected."""
    for key, value in {**QUIET_ENV, **frameworks_env}.items():
        os.environ.setdefault(key, value)
    if verbose():
        return None
    _silence_python_channels()
    try:
        return _Capture()
    except OSError:  # no file descriptors to redirect (an embedded interpreter): stay as we are
        return None
