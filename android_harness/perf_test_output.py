"""Parse what ONNX Runtime's `onnxruntime_perf_test` prints, in the forms it has printed across versions
(onnxruntime/test/perftest/performance_runner.cc; verbatim samples in tests/test_qnn.py):

- `Session creation time cost: 0.127918 s` (older: no space after the colon), `First inference time
  cost: 41 ms`, `Total inference time cost: 1.44871 s`, `Total inference requests: 10`, `Average
  inference time cost: 144.871 ms`, `Total inference run time: 1.44916 s`;
- the 2023 form without "inference": `Total time cost: 58.8053`, `Total iterations: 1000`, `Average
  time cost: 58.8053 ms`;
- `Avg CPU usage: 68 %`, `Peak working set size: 158171136 bytes`;
- latency statistics in seconds: `P50 Latency: 0.0587 s` or `P50 Latency is 0.0587 sec` (Min, Max,
  P50, P90, P95, P99, P999);
- errors: ONNX Runtime's log lines (`[E:onnxruntime:...]`) and `Error`/`Failed` lines.

The summary has the same keys as benchmark_output's, so results.jsonl and the tables read both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FIELDS = {
    "session_s": re.compile(rf"Session creation time cost:\s*({NUM})\s*s\b"),
    "first_ms": re.compile(rf"First inference time cost:\s*({NUM})\s*ms\b"),
    "requests": re.compile(r"Total (?:inference requests|iterations):\s*(\d+)"),
    "average_ms": re.compile(rf"Average (?:inference )?time cost:\s*({NUM})\s*ms\b"),
    "cpu_pct": re.compile(rf"Avg CPU usage:\s*({NUM})\s*%"),
    "peak_bytes": re.compile(rf"Peak working set size:\s*({NUM})\s*bytes"),
}
_LATENCY = re.compile(rf"\b(Min|Max|P50|P90|P95|P99|P999) Latency(?::| is)\s*({NUM})\s*s(?:ec)?\b")
_ERROR = re.compile(r"\[E:onnxruntime|^\s*(?:ERROR|Error|error|Failed|FAIL)\b|Exception")


@dataclass
class PerfTestOutput:
    values: dict[str, float] = field(default_factory=dict)
    latency_s: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    op_profile: list[dict] = field(default_factory=list)  # perf_test prints none (its -p writes a file)

    @property
    def complete(self) -> bool:
        """A timed figure was printed: the runs finished."""
        return "average_ms" in self.values

    def summary(self) -> dict:
        v, lat = self.values, self.latency_s

        def ms(key):
            return None if key not in lat else lat[key] * 1000.0

        return {
            "runs": int(v["requests"]) if "requests" in v else None,
            "init_ms": v["session_s"] * 1000.0 if "session_s" in v else None,
            "first_ms": v.get("first_ms"),
            "median_ms": ms("P50"),
            "mean_ms": v.get("average_ms"),
            "std_ms": None,
            "p90_ms": ms("P90"),
            "p95_ms": ms("P95"),
            "min_ms": ms("Min"),
            "max_ms": ms("Max"),
            "peak_memory_mb": v["peak_bytes"] / 2**20 if "peak_bytes" in v else None,
            "cpu_usage_pct": v.get("cpu_pct"),
            "delegate_nodes": {"name": "QNN HTP (CPU fallback compiled out)", "replaced": None, "total": None,
                               "outside": None, "partitions": None, "outside_ops": None},
        }


def parse(text: str) -> PerfTestOutput:
    out = PerfTestOutput()
    for raw in text.splitlines():
        line = raw.strip()
        for key, pattern in _FIELDS.items():
            if m := pattern.search(line):
                out.values[key] = float(m[1])
        for name, value in _LATENCY.findall(line):
            out.latency_s[name] = float(value)
        if _ERROR.search(line):
            out.errors.append(line)
    return out
