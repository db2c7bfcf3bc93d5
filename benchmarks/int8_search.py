"""The export-time int8 recipe search (issue 25) on the two random stand-ins: what it tries, what it
chooses, and how the chosen artifact then verifies on the held-out verification photos.

For each case and each stand-in (`--stand-in plain|trained-like`), one `edgekit export --precision int8`
with the default goal (25/20 dB median/min against the float graph, judged by leave-images-out
cross-validation over the calibration photos) and budget. Recorded: every recipe the search tried (SQNR
median/min over the folds' held-out samples, the
worst sample's agreement, speed over the float graph timed beside it on this host), the one chosen, the
search's seconds, and the artifact's own verification against its stand-in's PyTorch model on the
verification photos (never used by the search).

    python benchmarks/int8_search.py [--quick]   # writes results/int8_search.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from edgekit.export import ExportOptions, export
from edgekit.registry import get_variant, parse_resolution

CASES = [("b0-cls", "224"), ("b0-seg", "256x512"), ("m0-cls", "224"), ("b0-seg", "512x1024"), ("b1-seg-ade20k", "512x512")]
STAND_INS = ("plain", "trained-like")


def bench(name: str, resolution: str, stand_in: str, out: Path) -> dict:
    t0 = time.perf_counter()
    m = export(ExportOptions(name, "tflite", "int8", resolution, stand_in=stand_in, output=out),
               progress=lambda msg: print(f"  {msg}", flush=True) if "search:" in msg else None)
    search = m.target_info["int8"]["search"]
    v = m.verification
    variant = get_variant(name)
    print(f"{name} {resolution} {stand_in}: chose {search['chosen']} (met: {search['met']}); verification "
          f"{v['sqnr_db_median']:.1f}/{v['sqnr_db_min']:.1f} dB", flush=True)
    return {"variant": variant.name, "resolution": list(parse_resolution(resolution, variant)), "task": variant.task,
            "stand_in": stand_in, "export_s": round(time.perf_counter() - t0, 1), "search": search,
            "verification": {k: v[k] for k in ("sqnr_db_median", "sqnr_db_min", "agreement", "agreement_min",
                                               "agreement_kind", "passed")}}


def _host() -> str:
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{os.cpu_count()}-core {cpu}, XNNPACK"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only b0-cls")
    parser.add_argument("--only", help="VARIANT or VARIANT@HxW: rerun those cases, keeping the file's others (say so "
                                       "where you cite it)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "int8_search.json")
    args = parser.parse_args()
    report = {"weights": "random stand-ins, plain and trained-like (seed 0)", "host": _host(), "cases": []}
    only, _, only_res = (args.only or "").partition("@")
    cases = [CASES[0]] if args.quick else [c for c in CASES if only in ("", c[0]) and only_res in ("", c[1])]
    if args.only:
        kept = json.loads(args.out.read_text())
        rerun = {(get_variant(n).name, tuple(parse_resolution(r, get_variant(n)))) for n, r in cases}
        report = {**kept, "cases": [c for c in kept["cases"] if (c["variant"], tuple(c["resolution"])) not in rerun]}
    with tempfile.TemporaryDirectory() as tmp:
        for name, res in cases:
            for stand_in in STAND_INS:
                report["cases"].append(bench(name, res, stand_in, Path(tmp) / f"{name}-{stand_in}") | {"host": _host()})
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(report, indent=1) + "\n")  # each case as it lands


if __name__ == "__main__":
    main()
