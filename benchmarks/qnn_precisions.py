"""Quantised precisions on the Snapdragon NPU (issue 25): `edgekit export --target qnn` at `int8` (uint8
activations) and `w8a16` (uint16 activations, what Qualcomm AI Hub ships) for b0-seg, b1-seg-ade20k
and m0-cls, on both random stand-ins (`--stand-in plain|trained-like`).

Each export compiles for s8gen1 (Hexagon v69) and verifies on Qualcomm's x86 HTP simulator against
the stand-in's PyTorch model on the held-out verification photos, held to the int8 bars (SQNR >= 20 dB
on every photo, median >= 25 dB). Recorded per export: the verification, what runs in what precision
on the HTP, for w8a16 the HTP-against-QDQ agreement rounds and the nodes left out of the quantiser,
and the export's seconds (almost all of it the simulator; not the phone's latency, which the
simulator does not give).

    python benchmarks/qnn_precisions.py [--quick] [--only VARIANT]   # writes results/qnn_precisions.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from edgekit.export import ExportOptions, export
from edgekit.registry import get_variant, parse_resolution

CASES = [("m0-cls", "224"), ("b0-seg", "512x1024"), ("b1-seg-ade20k", "512x512")]
PRECISIONS = ("int8", "w8a16")
STAND_INS = ("plain", "trained-like")


def bench(name: str, resolution: str, precision: str, stand_in: str, out: Path) -> dict:
    t0 = time.perf_counter()
    m = export(ExportOptions(name, "qnn", precision, resolution, stand_in=stand_in, output=out),
               progress=lambda msg: print(f"  {msg}", flush=True) if "w8a16:" in msg else None)
    v = m.verification
    variant = get_variant(name)
    print(f"{name} {resolution} {precision} {stand_in}: {v['sqnr_db_median']:.1f}/{v['sqnr_db_min']:.1f} dB "
          f"({'pass' if v['passed'] else 'FAIL'})", flush=True)
    info = m.target_info
    return {"variant": variant.name, "resolution": list(parse_resolution(resolution, variant)), "task": variant.task,
            "precision": precision, "stand_in": stand_in, "export_s": round(time.perf_counter() - t0, 1),
            "compute": info["compute"], "op_precisions": info["op_precisions"], "w8a16": info.get("w8a16"),
            "verification": {k: v[k] for k in ("sqnr_db_median", "sqnr_db_min", "agreement", "agreement_min",
                                               "agreement_kind", "passed")}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only m0-cls")
    parser.add_argument("--only", help="rerun one variant's cases, keeping the file's others (say so where you cite it)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "qnn_precisions.json")
    args = parser.parse_args()
    report = {"weights": "random stand-ins, plain and trained-like (seed 0)", "device": "s8gen1 (v69), simulated",
              "cases": []}
    cases = [CASES[0]] if args.quick else [c for c in CASES if args.only in (None, c[0])]
    if args.only:
        kept = json.loads(args.out.read_text())
        report = {**kept, "cases": [c for c in kept["cases"] if c["variant"] != get_variant(args.only).name]}
    with tempfile.TemporaryDirectory() as tmp:
        for name, res in cases:
            for stand_in in STAND_INS:
                for precision in PRECISIONS:
                    report["cases"].append(bench(name, res, precision, stand_in, Path(tmp) / f"{name}-{stand_in}"))
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(report, indent=1) + "\n")  # each case as it lands


if __name__ == "__main__":
    main()
