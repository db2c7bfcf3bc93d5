"""Which nodes of each TFLite artifact XNNPACK takes, and which it leaves to the CPU reference kernels.

Coverage is what predicts a phone: every node outside the delegate is a partition boundary and a
slow reference kernel. Measured with the host harness's method (android_harness.host_benchmark:
delegate_coverage and partitions), so it needs no timing and is not disturbed by background load.

    python benchmarks/delegate_coverage.py          # writes results/delegate_coverage.json
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from android_harness.host_benchmark import delegate_coverage, partitions
from edgekit.deploy import Target
from edgekit.export import ExportOptions, export

CASES = [("b0-seg", "512x1024"), ("b1-seg-ade20k", "512x512"), ("b1-cls", "224"), ("m0-cls", "224")]
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")


def coverage(model: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=2)
    interpreter.allocate_tensors()
    inputs = [np.random.default_rng(0).random(d["shape"], dtype=np.float32).astype(d["dtype"])
              for d in interpreter.get_input_details()]
    replaced, total, outside = delegate_coverage(str(model), 2, inputs)
    return {"replaced": replaced, "total": total, "partitions": partitions(interpreter),
            "outside": {name: outside.count(name) for name in sorted(set(outside))}}


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, res in CASES:
            for precision in PRECISIONS:
                m = export(ExportOptions(name, Target.TFLITE, precision, res, output=Path(tmp)))
                row = {"variant": m["variant"], "resolution": m["resolution"], "precision": precision,
                       **coverage(Path(m["artifact_dir"]) / m["model_file"])}
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(__file__).parent / "results" / "delegate_coverage.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
