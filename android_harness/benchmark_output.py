"""Parse what LiteRT/TFLite `benchmark_model` prints, in every form it has printed across versions.

- `count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929` (microseconds; numbers
  may be in e-notation; newer builds add `p5= median= p95=`), once for the warmup runs and once for
  the timed runs: the last one is the timed runs;
- `Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., Inference (avg): ...`
  and the older `Average inference timings in us: Warmup: ..., Init: ..., Inference: ...`;
- the millisecond form `Inference (avg): 12.3 ms` (with `Init: ... ms` and friends);
- memory: `Memory footprint delta from the start of the tool (MB): init=.. overall=..`, the older
  `Peak memory footprint (MB): init=.. overall=..`, and
  `Overall peak memory footprint (MB) via periodic monitoring: ..`;
- `Replacing N out of M node(s) with delegate (NAME) node, yielding K partitions ...`: how much of the
  graph the delegate took (M - N nodes fall back to the CPU reference kernels);
- `Summary by node type` tables of `--enable_op_profiling` (the last one printed: the timed runs);
- line prefixes: `INFO: `, `VERBOSE: `, `ERROR: `, and Android logcat (`11-21 10:00:00.123  1234
  1234 I tflite  : ...` or `I/tflite  ( 1234): ...`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PREFIX = re.compile(
    r"^(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*?:\s?"  # logcat threadtime
    r"|[VDIWEF]/[^:(]*(?:\(\s*\d+\))?:\s?)?"  # logcat brief
    r"(?:(?:INFO|VERBOSE|WARNING|ERROR|DEBUG):\s?)?"
)
_STATS = re.compile(rf"\bcount=(\d+)((?:\s+[a-z0-9_]+={NUM})+)")
_KV = re.compile(rf"([a-z0-9_]+)=({NUM})")
_TIMINGS_US = re.compile(
    rf"Inference timings in us: Init: ({NUM}), First inference: ({NUM}), Warmup \(avg\): ({NUM}), "
    rf"Inference \(avg\): ({NUM})"
)
_OLD_TIMINGS_US = re.compile(rf"Average inference timings in us: Warmup: ({NUM}), Init: ({NUM}), "
                             rf"(?:no stats|Inference): ({NUM})")
_MS_FIELD = re.compile(rf"(Init|First inference|Warmup \(avg\)|Inference \(avg\)):\s*({NUM})\s*ms\b")
_MEM_DELTA = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                        rf"init=({NUM}) overall=({NUM})")
_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUM})")
_REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]*)\) node, yielding (\d+) partitions")
_OUTSIDE = re.compile(r"Nodes left to the CPU reference kernels: (.*)$")  # edgekit's host harness only
_SESSION = re.compile(rf"Initialized session in ({NUM})\s*ms")
_OP_ROW = re.compile(rf"^\s*([A-Za-z0-9_:/.\-]+(?: \([^)]*\))?)\s+(\d+)\s+({NUM})\s+({NUM})%\s+({NUM})%")


@dataclass
class Stats:
    count: int
    values_us: dict[str, float]  # first, curr, min, max, avg, std, p5, median, p95 ... as printed

    def ms(self, key: str) -> float | None:
        value = self.values_us.get(key)
        return None if value is None else value / 1000.0


@dataclass
class BenchmarkOutput:
    stats: list[Stats] = field(default_factory=list)  # in printed order: warmup, then timed runs
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_avg_ms: float | None = None
    inference_avg_ms: float | None = None
    mem_init_mb: float | None = None
    mem_overall_mb: float | None = None
    peak_mem_mb: float | None = None
    delegates: list[dict] = field(default_factory=list)
    outside_ops: dict[str, int] = field(default_factory=dict)
    op_profile: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def timed(self) -> Stats | None:
        return self.stats[-1] if self.stats else None

    @property
    def complete(self) -> bool:
        """A timed-run figure was printed: the benchmark ran to the end."""
        return self.inference_avg_ms is not None or len(self.stats) >= 2

    def summary(self) -> dict:
        """Latency in ms (median, mean, std, p90 where printed), memory, delegate coverage."""
        timed = self.timed
        values = timed.values_us if timed else {}

        def pick(*keys):
            return next((values[k] / 1000.0 for k in keys if k in values), None)

        replaced = sum(d["replaced"] for d in self.delegates) if self.delegates else None
        total = max((d["total"] for d in self.delegates), default=None)
        return {
            "runs": timed.count if timed else None,
            "init_ms": self.init_ms,
            "first_ms": self.first_ms,
            "median_ms": pick("median", "p50"),
            "mean_ms": self.inference_avg_ms if self.inference_avg_ms is not None else pick("avg"),
            "std_ms": pick("std"),
            "p90_ms": pick("p90"),
            "p95_ms": pick("p95"),
            "min_ms": pick("min"),
            "max_ms": pick("max"),
            "peak_memory_mb": self.peak_mem_mb if self.peak_mem_mb is not None else self.mem_overall_mb,
            "delegate_nodes": {
                "name": self.delegates[0]["name"] if self.delegates else None,
                "replaced": replaced,
                "total": total,
                "outside": None if replaced is None else total - replaced,
                "partitions": sum(d["partitions"] for d in self.delegates) if self.delegates else None,
                "outside_ops": self.outside_ops or None,
            },
        }

    def to_dict(self) -> dict:
        return asdict(self)


def strip_prefix(line: str) -> str:
    return _PREFIX.sub("", line.rstrip("\r\n"), count=1)


def parse(text: str) -> BenchmarkOutput:
    out = BenchmarkOutput()
    in_summary = False
    current_profile: list[dict] = []
    for raw in text.splitlines():
        line = strip_prefix(raw)
        if raw.lstrip().startswith(("ERROR", "E/")) or " E " in raw[:40]:
            if line.strip():
                out.errors.append(line.strip())
        if "Summary by node type" in line:
            in_summary, current_profile = True, []
            continue
        if in_summary:
            row = _OP_ROW.match(line)
            if row:
                current_profile.append({"node_type": row[1], "count": int(row[2]), "avg_ms": float(row[3]),
                                        "avg_pct": float(row[4]), "cdf_pct": float(row[5])})
                continue
            if "[Node type]" in line or not line.strip():
                continue
            in_summary = False
            out.op_profile = current_profile
        if m := _STATS.search(line):
            values = {k: float(v) for k, v in _KV.findall(m[2])}
            out.stats.append(Stats(int(m[1]), values))
        elif m := _TIMINGS_US.search(line):
            out.init_ms, out.first_ms, out.warmup_avg_ms, out.inference_avg_ms = (float(x) / 1000 for x in m.groups())
        elif m := _OLD_TIMINGS_US.search(line):
            out.warmup_avg_ms, out.init_ms, out.inference_avg_ms = (float(x) / 1000 for x in m.groups())
        elif _MS_FIELD.search(line):
            for name, value in _MS_FIELD.findall(line):
                attr = {"Init": "init_ms", "First inference": "first_ms", "Warmup (avg)": "warmup_avg_ms",
                        "Inference (avg)": "inference_avg_ms"}[name]
                setattr(out, attr, float(value))
        elif m := _MEM_DELTA.search(line):
            out.mem_init_mb, out.mem_overall_mb = float(m[1]), float(m[2])
        elif m := _MEM_PEAK.search(line):
            out.peak_mem_mb = float(m[1])
        elif m := _REPLACING.search(line):
            out.delegates.append({"replaced": int(m[1]), "total": int(m[2]), "name": m[3], "partitions": int(m[4])})
        elif m := _OUTSIDE.search(line):
            out.outside_ops = {name: int(n) for name, n in re.findall(r"([A-Z0-9_]+) x(\d+)", m[1])}
        elif (m := _SESSION.search(line)) and out.init_ms is None:
            out.init_ms = float(m[1])
    if in_summary:
        out.op_profile = current_profile
    return out
