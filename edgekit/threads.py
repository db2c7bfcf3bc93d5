"""Thread pools of the runtimes edgekit runs in-process: core, so a target's host runner and a phone
program's host stand-in (edgekit.android_harness) set them the same way without importing each other."""

from __future__ import annotations

import contextlib

from edgekit.errors import EdgekitError


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise EdgekitError(f"--threads must be at least 1 (got {threads})")


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """PyTorch's intra-op threads for the duration (None: PyTorch's default, one per core). On a busy
    2-core machine its default made one m0-cls forward 5.0 s instead of 0.12 s with one thread."""
    check_threads(threads)
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_executorch_threads(threads: int) -> None:
    """ExecuTorch's process-wide threadpool (XNNPACK's threads): torch.set_num_threads does not reach it."""
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    if threads > 0 and _threadpool_get_thread_count() != threads:
        _unsafe_reset_threadpool(threads)  # "unsafe" only while another thread executes: none does here
