"""Naive int8 on the two random stand-ins (issue 25): does the trained-like one fail as trained
EfficientViT fails, where the plain one does not?

For each case and each stand-in (`--stand-in plain|trained-like`, edgekit/models/init.py), through
`edgekit export` itself: full int8 with nothing kept float beyond the attention core and XNNPACK-less
ops (`--keep-float 0`: the naive W8A8), the same after the exact equalisation pass (`--equalize on`:
deploy pass cross_layer_equalization, on every conv pair the traced graph lets a scale through: in the
Microsoft models the FFNs, patch embedding, squeeze-excite and PatchMerging across ReLU and each head's
q into its depthwise conv; in the MIT models only the attention's aggregation and the exact upsample's
separable convs, linear boundaries), the same with bias correction of the int8
weights (`--bias-correction on`, the deploy pass bias_correction), int8-dynamic (int8
weights; TFLite quantises each matmul/conv input on the fly, per run) and fp16 for scale. Fidelity is each artifact's own held-out verification against
its own stand-in's PyTorch model (SQNR median/min over the verification photos, pixel or top-1
agreement). No timing: this is about what breaks.

    python benchmarks/trained_like_int8.py [--quick]   # writes results/trained_like_int8.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from edgekit.export import ExportOptions, export
from edgekit.registry import get_variant, parse_resolution

CASES = [("b0-cls", "224"), ("m0-cls", "224"), ("b0-seg", "256x512")]
STAND_INS = ("plain", "trained-like")
RECIPES = [("int8 (naive W8A8)", "int8", {"keep_float": 0}),
           ("int8 + equalize (exact, cross-layer)", "int8", {"keep_float": 0, "equalize": "on"}),
           ("int8 + bias correction", "int8", {"keep_float": 0, "bias_correction": "on"}),
           ("int8-dynamic (W8, activations int8 per run)", "int8-dynamic", {}), ("fp16", "fp16", {})]


def bench(name: str, resolution: str, stand_in: str, out: Path, recipes=RECIPES) -> dict:
    rows = {}
    for label, precision, options in recipes:
        t0 = time.perf_counter()
        m = export(ExportOptions(name, "tflite", precision, resolution, target_options=options, stand_in=stand_in,
                                 output=out / f"{stand_in}-{label.split()[0]}-{len(rows)}"))
        v = m.verification
        rows[label] = {"precision": precision, "options": options, "export_s": round(time.perf_counter() - t0, 1),
                       "sqnr_db_median": v["sqnr_db_median"], "sqnr_db_min": v["sqnr_db_min"],
                       "agreement": v["agreement"], "agreement_min": v["agreement_min"],
                       "agreement_kind": v["agreement_kind"], "passed": v["passed"]}
        print(f"{name} {resolution} {stand_in:12s} {label:38s} SQNR {v['sqnr_db_median']:5.1f}/{v['sqnr_db_min']:5.1f} "
              f"dB  {v['agreement_kind']} {v['agreement']:.1%}", flush=True)
    variant = get_variant(name)
    return {"variant": variant.name, "resolution": list(parse_resolution(resolution, variant)), "task": variant.task,
            "stand_in": stand_in, "recipes": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only m0-cls")
    parser.add_argument("--recipe", help="measure only this recipe (its label) and put it into the file's cases, "
                                         "keeping their other recipes (say so where you cite it)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "trained_like_int8.json")
    args = parser.parse_args()
    report = {"weights": "random stand-ins, plain and trained-like (seed 0)", "cases": []}
    recipes = [r for r in RECIPES if args.recipe in (None, r[0])]
    if not recipes:
        raise SystemExit(f"--recipe must be one of: {', '.join(r[0] for r in RECIPES)}")
    order = [r[0] for r in RECIPES]
    with tempfile.TemporaryDirectory() as tmp:
        for name, res in ([CASES[1]] if args.quick else CASES):
            for stand_in in STAND_INS:
                case = bench(name, res, stand_in, Path(tmp) / name, recipes)
                if args.recipe:  # merge into the recorded case (results are deterministic: seeded stand-ins)
                    old = next(c for c in json.loads(args.out.read_text())["cases"]
                               if (c["variant"], c["stand_in"]) == (case["variant"], stand_in))
                    merged = {**old["recipes"], **case["recipes"]}
                    case["recipes"] = {k: merged[k] for k in order if k in merged}
                report["cases"].append(case)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
