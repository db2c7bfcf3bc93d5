"""What the deploy-form rewrites cost, measured on real images (the numbers in the README).

For each case it runs `edgekit inspect --target tflite --precision fp16` (every rewrite) and keeps the full result: each rewrite's output change, the
seg-head upsampling options (trained bicubic / exact form / bilinear) with their pixel-argmax
agreement and PyTorch CPU time (round-robin, ratios only), the fp16 forward's SQNR, and the ONNX op
histogram. Run it on an otherwise idle machine:

    python benchmarks/deploy_form.py [--runs 5] [--out benchmarks/results/deploy_form.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgekit.inspect import inspect_variant

CASES = [("b0-seg", None), ("b1-seg", "512x1024"), ("m0-cls", None), ("b1-cls", None)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "deploy_form.json")
    args = parser.parse_args()
    results = []
    for name, resolution in CASES:
        r = inspect_variant(name, "tflite", resolution, precision="fp16", runs=args.runs)
        results.append(r)
        line = f"{r['variant']:20s} {'x'.join(map(str, r['resolution'])):>9s}  fp16 min SQNR {r['fp16']['sqnr_db_min']:.1f} dB"
        for u in r.get("upsample_options", []):
            line += (f"  {u['upsample']}: argmax {u['vs_trained']['agreement']:.2%}"
                     f" cpu x{u['cpu_ratio']:.2f}")
        print(line, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
