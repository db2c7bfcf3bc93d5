"""The issue's sweep on this host: b0-seg, b1-cls and m0-cls, TFLite fp32 and int8, at each variant's
own resolution, through `edgekit sweep` itself (the same code a user runs).

    python benchmarks/sweep.py [WORK_DIR]   # writes results/sweep.json and results/sweep.png

WORK_DIR keeps the artifacts and results.jsonl (default: a folder under /tmp), so an interrupted
run resumes where it stopped, as `edgekit sweep` does.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from edgekit.sweep import SweepOptions, sweep

VARIANTS = ("b0-seg", "b1-cls", "m0-cls")
PRECISIONS = ("fp32", "int8")


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.gettempdir()) / "edgekit-sweep-benchmark"
    results = Path(__file__).parent / "results"
    result = sweep(SweepOptions(VARIANTS, ("tflite",), PRECISIONS, output=work, runs=30, warmup=5),
                   lambda msg: print(msg, flush=True))
    shutil.copyfile(result["plot"], results / "sweep.png")
    for row in result["rows"]:
        row["artifact"] = Path(row["artifact"]).name if row["artifact"] else None
    result.update(plot="results/sweep.png", results=None)
    (results / "sweep.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
