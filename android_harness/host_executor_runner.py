"""The host stand-in for ExecuTorch's `executor_runner`: its flags (--model_path, --num_executions,
--cpu_threads) and its ET_LOG output, run with `executorch.runtime` (the same C++ runtime and XNNPACK
backend, through the Python bindings) on this machine. `edgekit profile --device host` runs it for
ExecuTorch artifacts; the tests push it to the virtual adb device in place of the arm64 binary.
Inputs are all ones, as the real runner's are, unless `--inputs FILE[,FILE...]` gives raw input bytes;
`--output_file BASE` writes each output tensor's raw bytes to BASE-<i>.bin after the last execution
(both as examples/portable/executor_runner/executor_runner.cpp defines them).
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
    p.add_argument("--inputs", default="")
    p.add_argument("--output_file", default="")
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
    if args.inputs:
        first = args.inputs.split(",")[0]
        if not os.path.isfile(first):
            _log("E", 120, f"Failed to open input file: {first}")
            return 1
        with open(first, "rb") as f:
            raw = f.read()
        if len(raw) != x.numel() * 4:
            _log("E", 130, f"Could not prepare inputs: {first} holds {len(raw)} bytes, the input takes {x.numel() * 4}")
            return 1
        x = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(x.shape)
    total, outputs = 0.0, []
    for i in range(args.num_executions):
        t0 = time.perf_counter()
        outputs = method.execute([x])
        elapsed = (time.perf_counter() - t0) * 1000
        total += elapsed
        _log("I", 640, f"Iteration {i + 1} of {args.num_executions}: {elapsed:f} ms")
    _log("I", 650, f"Model executed successfully {args.num_executions} time(s) in {total:f} ms.")
    if args.output_file:
        for i, out in enumerate(outputs):
            name = f"{args.output_file}-{i}.bin"
            _log("I", 670, f"Writing output to file: {name}")
            with open(name, "wb") as f:
                f.write(out.contiguous().numpy().tobytes())
    return 0


def write_launcher(path, python: str | None = None) -> None:
    """An executable file that runs this harness (pushed to the virtual device in tests)."""
    from edgekit.android_harness.launcher import write_launcher as write

    write(path, "edgekit.android_harness.host_executor_runner", python)


if __name__ == "__main__":
    raise SystemExit(main())
