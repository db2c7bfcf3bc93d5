"""Every target and precision on edgekit's trained SR model: what each conversion costs in PSNR-Y.

For each (target, precision): `edgekit export sr-x2` at the paper's 160x240 from the shipped weights,
then `edgekit eval` on the built-in verification photos (never trained on; HR photos, inputs made with
MATLAB-style bicubic, tiled), which scores the artifact, PyTorch and bicubic in one run. Recorded: PSNR-Y
and SSIM-Y against the HR photos per side and per photo, the artifact's delta to PyTorch with its
paired-bootstrap interval, the export's verification (PSNR-Y of the artifact's output against PyTorch's),
and host latency of one 160x240 tile for the runtimes that time on this host (TFLite, ONNX Runtime,
ExecuTorch; interleaved in one run: benchmarks/_timing.py). CoreML runs as its PyTorch proxy off macOS
and QNN on Qualcomm's simulator: fidelity only, no latency.

The goals: fp16 within 0.02 dB of fp32; int8 within 0.2 dB of fp32 at >= 1.5x fp32's
speed here; QNN w8a16 within 0.1 dB.

    python benchmarks/sr_targets.py [--variant sr-x2] [--only tflite:int8,...]   # results/sr_targets.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _timing import time_round_robin

from edgekit.demo_data import super_resolution
from edgekit.eval import EvalOptions, evaluate
from edgekit.export import ExportOptions, export

CASES = [("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("onnx", "fp32"), ("executorch", "fp32"),
         ("executorch", "int8"), ("coreml", "fp16"), ("qnn", "fp16"), ("qnn", "w8a16")]
TIMED = ("tflite", "onnx", "executorch")
RESULTS = Path(__file__).parent / "results" / "sr_targets.json"


def case(variant: str, target: str, precision: str, data: Path, out: Path) -> tuple[dict, Path]:
    t0 = time.perf_counter()
    m = export(ExportOptions(variant, target, precision, output=out), progress=lambda _m: None)
    seconds = time.perf_counter() - t0
    r = evaluate(EvalOptions(Path(m.artifact_dir), data))
    v = m.verification
    row = {"target": target, "precision": precision, "export_s": round(seconds, 1),
           "verified": v["passed"], "psnr_y_vs_pytorch_db": [round(v["psnr_y_db_median"], 2),
                                                            round(v["psnr_y_db_min"], 2)],
           "ran": r["runner"], "psnr_y": round(r["artifact"]["value"], 4), "pytorch_psnr_y": round(r["pytorch"]["value"], 4),
           "bicubic_psnr_y": round(r["bicubic"]["value"], 4), "delta_db": round(r["delta"], 4),
           "delta_ci95": [round(x, 4) for x in r["delta_ci95"]], "ssim_y": round(r["secondary"]["artifact"], 5),
           "pytorch_ssim_y": round(r["secondary"]["pytorch"], 5), "int8": _int8_facts(m.target_info)}
    print(f"{target} {precision}: PSNR-Y {row['psnr_y']:.3f} dB (PyTorch {row['pytorch_psnr_y']:.3f}, delta "
          f"{row['delta_db']:+.3f}), verified {'pass' if row['verified'] else 'FAIL'}, {seconds:.0f} s", flush=True)
    return row, Path(m.artifact_dir)


def fp16_arithmetic(variant: str, data: Path) -> dict:
    """The deploy form with the fp16-safe attention (what fp16 artifacts carry) run by PyTorch in float16
    against float32 on the same tiles: what fp16 *arithmetic* (a GPU delegate's, the NPU's fp16) costs, which
    the host's fp16 TFLite (fp16 weights, fp32 XNNPACK compute) does not show."""
    import torch

    from edgekit.deploy import make_deploy_form
    from edgekit.deploy.passes import fp16_safe_attention
    from edgekit.reference import run_images, source_model
    from edgekit.registry import get_variant
    from edgekit.sr_data import load_pair, samples, scores, to_pixels
    from edgekit.targets import get_target
    from edgekit.tiling import run_tiled

    v = get_variant(variant)
    source, _ = source_model(v, v.resolution, None)
    model = fp16_safe_attention(make_deploy_form(source, v.resolution, get_target("tflite")).model, v.resolution)
    sides = {"fp32": [], "fp16": []}
    for _name, lr_path, hr_path in samples(data, "hr-only"):
        lr, hr = load_pair(lr_path, hr_path, v.scale)
        x = np.ascontiguousarray((lr / 255).astype(np.float32).transpose(2, 0, 1))
        for key, dtype in (("fp32", None), ("fp16", torch.float16)):
            out = run_tiled(lambda t, d=dtype: run_images(model, t, d), x, v.resolution, v.scale)
            sides[key].append(scores(to_pixels(out), hr, v.scale)[0])
    return {"psnr_y_fp32": round(float(np.mean(sides["fp32"])), 4), "psnr_y_fp16": round(float(np.mean(sides["fp16"])), 4),
            "delta_db": round(float(np.mean(sides["fp16"]) - np.mean(sides["fp32"])), 4)}


def _int8_facts(info: dict | None) -> dict | None:
    """What the int8 recipe search chose (the manifest's target_info["int8"]), or None for a float artifact."""
    record = (info or {}).get("int8")
    if not record:
        return None
    search = record.get("search") or {}
    return {"keep_float": record.get("keep_float"), "kept_float": record.get("kept_float"),
            "equalized": record.get("equalized"), "met": search.get("met"), "fast_enough": search.get("fast_enough"),
            "instead": search.get("instead")}


def latencies(artifacts: dict[str, Path]) -> dict[str, float]:
    from edgekit.manifest import read_manifest
    from edgekit.runtime import open_runner

    x = np.random.default_rng(0).random((1, 3, 160, 240), dtype=np.float32)
    fns = {}
    for key, path in artifacts.items():
        manifest = read_manifest(path)
        runner = open_runner(manifest, 2)
        shape = manifest.logits_shape()
        fns[key] = (lambda r=runner, s=shape: r.run(x, s))
    return time_round_robin(fns, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="sr-x2")
    parser.add_argument("--only", help="target:precision,... (the others are kept from the results file)")
    parser.add_argument("--fp16-arithmetic", action="store_true", help="only PyTorch fp16 vs fp32 (kept beside)")
    args = parser.parse_args()
    wanted = [tuple(c.split(":")) for c in args.only.split(",")] if args.only else CASES
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    kept = {(r["target"], r["precision"]): r for r in results.get(args.variant, {}).get("cases", [])}

    def save() -> None:  # after every case: a long run that is stopped keeps what it measured
        results[args.variant] = {**results.get(args.variant, {}), "resolution": [160, 240],
                                 "photos": "the 7 built-in verification photos (hr-only)",
                                 "weights": "edgekit's own (benchmarks/train_sr.py)",
                                 "cases": [kept[c] for c in CASES if c in kept]}
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")

    if args.fp16_arithmetic:
        with tempfile.TemporaryDirectory() as tmp:
            super_resolution(Path(tmp), "hr-only")
            results.setdefault(args.variant, {})["pytorch_fp16_arithmetic"] = fp16_arithmetic(args.variant, Path(tmp))
        save()
        print(results[args.variant]["pytorch_fp16_arithmetic"])
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "photos"
        super_resolution(data, "hr-only")
        artifacts = {}
        for target, precision in CASES:
            if (target, precision) not in wanted:
                continue
            row, path = case(args.variant, target, precision, data, Path(tmp) / "out")
            kept[(target, precision)] = row
            save()
            if target in TIMED:
                artifacts[f"{target}:{precision}"] = path
        if artifacts:
            ms = latencies(artifacts)
            for key, value in ms.items():
                target, precision = key.split(":")
                kept[(target, precision)]["host_ms"] = round(value, 2)
                kept[(target, precision)]["timed_with"] = sorted(ms)
            save()
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
