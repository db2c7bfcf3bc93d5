"""Which quantised tensors hold int8 back (issue 14): `edgekit inspect --quantization` for the four
int8 goal cases, on the held-out photos (never the calibration ones).

For each case: every op TFLite quantises, made int8 alone (everything else float) and ranked by the
SQNR of the output against the same graph in float, worst photo first; then full int8 and int8 with
the 10/30/60 most costly ops kept float, measured on the same photos. The result file keeps the 15
most costly ops and a summary of the whole ranking (how many ops, how many cost more than 30 dB
alone): whether one tensor breaks the model or many small errors add up. Random stand-in weights.

    python benchmarks/int8_sensitivity.py [--quick]   # writes results/int8_sensitivity.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgekit.inspect import quantization_analysis

CASES = [("b0-seg", "512x1024"), ("b1-seg-ade20k", "512x512"), ("b0-cls", "224"), ("m0-cls", "224")]
TOP = 15


def analyse(name: str, resolution: str) -> dict:
    t0 = time.perf_counter()
    d = quantization_analysis(name, "tflite", resolution)
    ops = d["ops"]
    worst = np.array([op["sqnr_db_min"] for op in ops])
    return {"variant": d["variant"], "resolution": d["resolution"], "images": d["images"],
            "calibration": d["calibration"], "seconds": round(time.perf_counter() - t0, 1),
            "ops_quantised": len(ops), "ops_below_30_db_alone": int((worst < 30).sum()),
            "ops_below_40_db_alone": int((worst < 40).sum()),
            "most_costly": [{k: op[k] for k in ("op", "node", "shape", "sqnr_db", "sqnr_db_min")} for op in ops[:TOP]],
            "keep_float": d["keep_float"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only b0-cls")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "int8_sensitivity.json")
    args = parser.parse_args()
    cases = [CASES[2]] if args.quick else CASES
    report = {"weights": "random stand-in", "cases": []}
    for name, res in cases:
        case = analyse(name, res)
        report["cases"].append(case)
        top = case["most_costly"][0]
        points = ", ".join(f"keep {p['keep_float']}: {p['sqnr_db_median']:.1f}/{p['sqnr_db_min']:.1f}"
                           for p in case["keep_float"])
        print(f"{case['variant']} {res}: {case['ops_quantised']} ops, {case['ops_below_30_db_alone']} cost more than "
              f"30 dB alone; worst {top['op']} {top['sqnr_db_min']:.1f} dB; {points} dB", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
