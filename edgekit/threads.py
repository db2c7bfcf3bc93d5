"""Thread pools of the runtimes edgekit runs in-process: core, so a target's host runner and a phone
program's host stand-in (edgekit.android_harness) set them the same way without importing each other."""

from __future__ import annotations


def set_executorch_threads(threads: int) -> None:
    """ExecuTorch's process-wide threadpool (XNNPACK's threads): torch.set_num_threads does not reach it."""
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    if threads > 0 and _threadpool_get_thread_count() != threads:
        _unsafe_reset_threadpool(threads)  # "unsafe" only while another thread executes: none does here
