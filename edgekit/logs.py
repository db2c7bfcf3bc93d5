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

VERBOSE_ENV = "EDGEKIT_VERBOSE"
# Environment settings the frameworks read when they load: quiet unless asked.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow's C++ INFO/WARNING lines
    "TF_ENABLE_ONEDNN_OPTS": "0",  # its "oneDNN custom operations are on" notice (conversion only)
    "GRPC_VERBOSITY": "ERROR",
    "TQDM_DISABLE": "1",  # coremltools' and onnx2tf's progress bars
    "ORT_LOG_SEVERITY_LEVEL": "3",
    "PYTHONWARNINGS": "ignore",  # subprocesses (the host harness) inherit it
}


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


def quiet_process() -> _Capture | None:
    """Quiet the frameworks for the rest of this process (unless --verbose); returns the capture to
    finish at exit, or None when nothing was redirected."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if verbose():
        return None
    _silence_python_channels()
    try:
        return _Capture()
    except OSError:  # no file descriptors to redirect (an embedded interpreter): stay as we are
        return None
