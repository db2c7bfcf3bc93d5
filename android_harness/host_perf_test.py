"""The host stand-in for ONNX Runtime's `onnxruntime_perf_test` with the CPU execution provider: its
flags (`-m times -r N -I -x THREADS -e cpu MODEL`, onnxruntime/test/perftest/command_args_parser.cc) and
what performance_runner.cc prints, run with ONNX Runtime's CPU EP on this machine. `edgekit profile
--device host` runs it for ONNX artifacts; the tests push it to the virtual adb device in place of the
arm64 binary. Inputs are generated (-I), as the real program's are; one warm-up run first, as it makes.
"""

from __future__ import annotations

import sys
import time


def _flags(argv: list[str]) -> tuple[dict[str, str], str]:
    """(-flag -> value, the model path): the model is the last argument; -I takes no value."""
    values, i = {}, 0
    while i < len(argv) - 1:
        if argv[i] == "-I":
            values["-I"] = ""
            i += 1
        else:
            values[argv[i]] = argv[i + 1]
            i += 2
    return values, argv[-1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("Error: no model given (usage: onnxruntime_perf_test [options...] model_path)", flush=True)
        return 1
    args, model = _flags(argv)
    if args.get("-e", "cpu") != "cpu":
        print(f"Error: this stand-in runs the CPU execution provider only, not {args['-e']}", flush=True)
        return 1
    import os

    if not os.path.isfile(model):
        print(f"[E:onnxruntime:, inference_session.cc:1] Load model from {model} failed: file not found", flush=True)
        return 1
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(args.get("-x", "0"))
    options.log_severity_level = 3
    t0 = time.perf_counter()
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    print_report(time.perf_counter() - t0, *time_runs(session, int(args.get("-r", "1000"))))
    return 0


def time_runs(session, runs: int) -> tuple[float, list[float], float]:
    """(first run s, each timed run s, the timed runs' wall time s) on a generated input, as
    performance_runner does: one warm-up run, then `runs` timed ones."""
    import numpy as np

    inp = session.get_inputs()[0]
    feed = {inp.name: np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)}
    t0 = time.perf_counter()
    session.run(None, feed)
    first = time.perf_counter() - t0
    times = []
    begin = time.perf_counter()
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return first, times, time.perf_counter() - begin


def print_report(created: float, first: float, times: list[float], total: float, extra: str = "") -> None:
    """What performance_runner.cc prints after the runs (times in seconds); `extra`: lines after the
    summary (the CPU and memory lines a phone build prints)."""
    print(f"Session creation time cost: {created:g} s\n"
          f"First inference time cost: {int(first * 1000)} ms\n"
          f"Total inference time cost: {sum(times):g} s\n"
          f"Total inference requests: {len(times)}\n"
          f"Average inference time cost: {sum(times) / len(times) * 1000:g} ms\n"
          f"Total inference run time: {total:g} s\n"
          f"Number of inferences per second: {len(times) / total:g} {extra}", flush=True)
    s = sorted(times)
    for label, q in (("Min", 0.0), ("Max", None), ("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99),
                     ("P999", 0.999)):
        print(f"{label} Latency: {s[-1] if q is None else s[int(len(s) * q)]:g} s")


def write_launcher(path, python: str | None = None) -> None:
    """An executable file that runs this harness (pushed to the virtual device in tests)."""
    from edgekit.android_harness.launcher import write_launcher as write

    write(path, "edgekit.android_harness.host_perf_test", python)


if __name__ == "__main__":
    raise SystemExit(main())
