"""Which nodes of each TFLite artifact XNNPACK takes, and which it leaves to the CPU reference kernels.

Coverage is what predicts a phone: every node outside the delegate is a partition boundary and a
slow reference kernel. Measured with the host harness's method (android_harness.host_benchmark.coverage),
so it needs no timing and is not disturbed by background load.

    python benchmarks/delegate_coverage.py          # writes results/delegate_coverage.json
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from edgekit.android_harness.host_benchmark import coverage
from edgekit.export import ExportOptions, export

CASES = [("b0-seg", "512x1024"), ("b1-seg-ade20k", "512x512"), ("b1-cls", "224"), ("m0-cls", "224")]
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, res in CASES:
            for precision in PRECISIONS:
                m = export(ExportOptions(name, "tflite", precision, res, output=Path(tmp)))
                row = {"variant": m.variant, "resolution": m.resolution, "precision": precision,
                       **coverage(str(m.model_path), 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(__file__).parent / "results" / "delegate_coverage.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
