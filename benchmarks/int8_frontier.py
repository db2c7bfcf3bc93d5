"""The int8 frontier (issue 14): for each case and each int8 recipe, held-out fidelity and the speed
over fp32 measured in the same run, through `edgekit export` itself.

Recipes: full int8 (the default: attention core and XNNPACK-less ops float), the same with the N ops
whose quantisation costs most on the calibration photos kept float (`--keep-float N`), int8-dynamic
(int8 weights, float activations) and fp16 for reference. Fidelity is each artifact's own held-out
verification (SQNR median/min over the verification photos, pixel or top-1 agreement); speed is the
TFLite artifacts of a case timed back to back in blocks in one round robin (ai-edge-litert, XNNPACK,
2 threads). Random stand-in weights.

    python benchmarks/int8_frontier.py [--quick] [--runs 20]   # writes results/int8_frontier.json
    python benchmarks/int8_frontier.py --annotate                # recompute meets_goal in that file

`passed` is edgekit's own verification (for random stand-ins: the SQNR bars only, since their
agreement understates a trained model's). `meets_goal` is issue 14's goal for these four cases,
stricter: SQNR >= 25 dB median and >= 20 dB on every photo, segmentation keeping >= 95% of pixel
classes on every photo, and for b0-seg int8 >= 1.5x fp32. The int8 default per variant
(targets/tflite/int8.py) is the fastest int8 recipe that meets the goal.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _timing import time_round_robin

from edgekit.calibration.images import image_batch
from edgekit.export import ExportOptions, export
from edgekit.registry import get_variant, parse_resolution
from edgekit.targets.tflite.runner import TFLiteRunner

GOAL_SQNR_MEDIAN_DB, GOAL_SQNR_MIN_DB, GOAL_PIXELS = 25.0, 20.0, 0.95
GOAL_SPEED = {"b0-seg-cityscapes": 1.5}  # int8 over fp32, same run
CASES = [("b0-seg", "512x1024"), ("b1-seg-ade20k", "512x512"), ("b0-cls", "224"), ("m0-cls", "224")]
KEEP_FLOAT = (0, 10, 30, 60, 90)
THREADS = 2


def recipes() -> list[tuple[str, str, dict]]:
    return [("fp32", "fp32", {}), *((f"int8 keep-float {k}" if k else "int8", "int8", {"keep_float": k})
                                    for k in KEEP_FLOAT), ("int8-dynamic", "int8-dynamic", {}), ("fp16", "fp16", {})]


def bench_case(name: str, resolution: str, runs: int, out: Path) -> dict:
    variant = get_variant(name)
    size = parse_resolution(resolution, variant)
    rows = {}
    for label, precision, options in recipes():
        t0 = time.perf_counter()
        m = export(ExportOptions(name, "tflite", precision, resolution, target_options=options,
                                 output=out / label.replace(" ", "-")))
        v = m.verification
        kept = (m.target_info.get("int8") or {}).get("kept_float") or []
        rows[label] = {"precision": precision, "options": options, "path": str(m.model_path),
                       "export_s": round(time.perf_counter() - t0, 1), "file_mb": m.file_bytes / 1e6,
                       "sqnr_db_median": v["sqnr_db_median"], "sqnr_db_min": v["sqnr_db_min"],
                       "agreement": v["agreement"], "agreement_min": v["agreement_min"],
                       "agreement_kind": v["agreement_kind"], "passed": v["passed"], "failures": v["failures"],
                       "kept_float_ops": sorted({k["op"] for k in kept})}
        print(f"{variant.name} {resolution} {label}: SQNR {v['sqnr_db_median']:.1f}/{v['sqnr_db_min']:.1f} dB, "
              f"{v['agreement_kind']} {v['agreement']:.1%}", flush=True)
    image = image_batch(variant, size)[:1]
    runners = {k: TFLiteRunner(Path(r["path"]), THREADS) for k, r in rows.items()}
    ms = time_round_robin({k: (lambda r=r: r.run(image)) for k, r in runners.items()}, runs)
    for k, row in rows.items():
        row.update(median_ms=ms[k], speed_vs_fp32=ms["fp32"] / ms[k])
        del row["path"]
    return {"variant": variant.name, "resolution": list(size), "task": variant.task, "recipes": rows}


def meets_goal(variant: str, task: str, row: dict) -> bool:
    return (row["sqnr_db_median"] >= GOAL_SQNR_MEDIAN_DB and row["sqnr_db_min"] >= GOAL_SQNR_MIN_DB
            and (task != "seg" or row["agreement_min"] >= GOAL_PIXELS)
            and row["speed_vs_fp32"] >= GOAL_SPEED.get(variant, 0.0))


def annotate(report: dict) -> dict:
    for case in report["cases"]:
        for label, row in case["recipes"].items():
            row["meets_goal"] = label.startswith("int8") and row["precision"] == "int8" and \
                meets_goal(case["variant"], case["task"], row)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="only m0-cls")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "int8_frontier.json")
    parser.add_argument("--annotate", action="store_true", help="only recompute meets_goal in --out")
    args = parser.parse_args()
    if args.annotate:
        args.out.write_text(json.dumps(annotate(json.loads(args.out.read_text())), indent=1) + "\n")
        return
    report = {"threads": THREADS, "weights": "random stand-in", "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, res in ([CASES[-1]] if args.quick else CASES):
            case = bench_case(name, res, args.runs, Path(tmp) / name)
            report["cases"].append(case)
            for label, r in case["recipes"].items():
                print(f"{case['variant']:16s} {res:>9s} {label:20s} {r['median_ms']:7.2f} ms  x{r['speed_vs_fp32']:.2f} "
                      f"fp32  SQNR {r['sqnr_db_median']:5.1f}/{r['sqnr_db_min']:5.1f} dB  agree {r['agreement']:.1%}"
                      f"  {'pass' if r['passed'] else 'FAIL'}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(annotate(report), indent=1) + "\n")


if __name__ == "__main__":
    main()
