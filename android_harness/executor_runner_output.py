"""Parse what ExecuTorch's `executor_runner` (examples/portable/executor_runner/executor_runner.cpp)
prints through ET_LOG, whose default sink (runtime/platform/default) writes
`%c %02u:%02u:%02u.%06lu executorch:%s:%zu] %s` (level, time since start, file, line, message):

- `Model loaded in 12.345000 ms.`
- `Iteration 3 of 50: 9.876000 ms` (one line per execution; the first is the warm-up);
- `Model executed successfully 50 time(s) in 512.345000 ms.` (older runners: `Model executed
  successfully.` with no time, which gives no timings);
- errors: level E or F lines (`E 00:00:00.001 executorch:method.cpp:1234] ...`).

The summary has the same keys as benchmark_output's, so results.jsonl and the tables read all.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PREFIX = re.compile(r"^([DIEF]) \d+:\d\d:\d\d\.\d+ executorch:[^\]]*\] ?(.*)$")
_LOADED = re.compile(rf"Model loaded in ({NUM}) ms")
_ITERATION = re.compile(rf"Iteration (\d+) of (\d+): ({NUM}) ms")
_TOTAL = re.compile(rf"Model executed successfully (\d+) time\(s\) in ({NUM}) ms")


@dataclass
class RunnerOutput:
    load_ms: float | None = None
    iterations: list[float] = field(default_factory=list)
    executions: int | None = None
    total_ms: float | None = None
    errors: list[str] = field(default_factory=list)
    op_profile: list[dict] = field(default_factory=list)  # the runner writes an ETDump file, not a table

    @property
    def complete(self) -> bool:
        return self.total_ms is not None or bool(self.iterations)

    def summary(self) -> dict:
        timed = self.iterations[1:] if len(self.iterations) > 1 else self.iterations  # the first warms up

        def pct(q: float) -> float | None:
            if not timed:
                return None
            s = sorted(timed)
            return s[min(len(s) - 1, int(q * len(s)))]

        mean = statistics.fmean(timed) if timed else (self.total_ms / self.executions if self.total_ms else None)
        return {
            "runs": len(timed) if timed else self.executions,
            "init_ms": self.load_ms,
            "first_ms": self.iterations[0] if self.iterations else None,
            "median_ms": statistics.median(timed) if timed else None,
            "mean_ms": mean,
            "std_ms": statistics.pstdev(timed) if len(timed) > 1 else None,
            "p90_ms": pct(0.9),
            "p95_ms": pct(0.95),
            "min_ms": min(timed) if timed else None,
            "max_ms": max(timed) if timed else None,
            "peak_memory_mb": None,
            "delegate_nodes": {"name": "XnnpackBackend (see the manifest's delegation)", "replaced": None,
                               "total": None, "outside": None, "partitions": None, "outside_ops": None},
        }


def parse(text: str) -> RunnerOutput:
    out = RunnerOutput()
    for raw in text.splitlines():
        m = _PREFIX.match(raw.strip())
        level, message = (m[1], m[2]) if m else ("", raw.strip())
        if level in ("E", "F"):
            out.errors.append(message)
        if found := _LOADED.search(message):
            out.load_ms = float(found[1])
        elif found := _ITERATION.search(message):
            out.iterations.append(float(found[3]))
        elif found := _TOTAL.search(message):
            out.executions, out.total_ms = int(found[1]), float(found[2])
    return out
