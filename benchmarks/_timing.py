"""Timing shared by the benchmarks: ratios only count within one run of one of these."""

from __future__ import annotations

import statistics
import time

ROUNDS = 5


def time_round_robin(fns: dict, runs: int) -> dict[str, float]:
    """Median ms of each fn over `runs` timed calls, taken back to back in blocks (the steady state
    benchmark_model measures), the blocks interleaved over ROUNDS rounds in rotating order so load
    drift hits all alike. Each block starts with an untimed call: ONNX Runtime's and OpenMP's worker
    threads spin for a while after a run and steal the cores from whichever runner comes next
    (measured: TFLite fp32 right after ONNX Runtime took 42 ms, 25 ms otherwise); and after an idle
    gap instead, small models pay thread wake-up (b1-cls: 13.9 ms after 0.1 s idle, 8.2 back to back)."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    keys = list(fns)
    per_round = max(1, -(-runs // ROUNDS))
    for i in range(ROUNDS):
        for k in keys[i % len(keys):] + keys[: i % len(keys)]:
            fns[k]()
            for _ in range(per_round):
                t0 = time.perf_counter()
                fns[k]()
                times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}
