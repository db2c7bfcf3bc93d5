"""The host stand-in for ExecuTorch's `executor_runner`: its flags (--model_path, --num_executions,
--cpu_threads) and its ET_LOG output, run with `executorch.runtime` (the same C++ runtime and XNNPACK
backend, through the Python bindings) on this machine. `edgekit profile --device host` runs it for
ExecuTorch artifacts; the tests push it to the virtual adb device in place of the arm64 binary.
Inputs are all ones, as the real runner's are.
"""

from __future__ import annotations

import argparse
import os
import time

_START = time.perf_counter()


def _log(level: str, line: int, message: str) -> None:
    us = int((time.perf_counter() - _START) * 1e6)
    sec, us = divmod(us, 1_000_000)
    hour, rem = divmod(sec, 3600)
    minute, sec = divmod(rem, 60)
    print(f"{level} {hour:02d}:{minute:02d}:{sec:02d}.{us:06d} executorch:executor_runner.cpp:{line}] {message}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="executor_runner (edgekit host stand-in)")
    p.add_argument("--model_path", default="model.pte")
    p.add_argument("--num_executions", type=int, default=1)
    p.add_argument("--cpu_threads", type=int, default=-1)
    args = p.parse_args(argv)
    if not os.path.isfile(args.model_path):
        _log("E", 300, f"Failed to open {args.model_path}")
        return 1
    import torch
    from executorch.runtime import Runtime

    from edgekit.threads import set_executorch_threads

    _log("I", 180, f"Resetting threadpool with num threads = {args.cpu_threads}")
    set_executorch_threads(args.cpu_threads)
    t0 = time.perf_counter()
    program = Runtime.get().load_program(args.model_path)
    method = program.load_method("forward")
    _log("I", 460, f"Model loaded in {(time.perf_counter() - t0) * 1000:f} ms.")
    meta = method.metadata.input_tensor_meta(0)
    x = torch.ones(list(meta.sizes()), dtype=torch.float32)
    total = 0.0
    for i in range(args.num_executions):
        t0 = time.perf_counter()
        method.execute([x])
        elapsed = (time.perf_counter() - t0) * 1000
        total += elapsed
        _log("I", 640, f"Iteration {i + 1} of {args.num_executions}: {elapsed:f} ms")
    _log("I", 650, f"Model executed successfully {args.num_executions} time(s) in {total:f} ms.")
    return 0


def write_launcher(path, python: str | None = None) -> None:
    """An executable file that runs this harness (pushed to the virtual device in tests)."""
    from edgekit.android_harness.launcher import write_launcher as write

    write(path, "edgekit.android_harness.host_executor_runner", python)


if __name__ == "__main__":
    raise SystemExit(main())
