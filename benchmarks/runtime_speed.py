"""edgekit's TFLite and ExecuTorch artifacts against a fair ONNX Runtime peer and PyTorch on this machine.

The fair peer is ONNX Runtime on the same deploy form as TFLite (`--target onnx --upsample exact`:
the exact bicubic as nearest + depthwise conv, static attention, BatchNorm folded), with its graph
optimisations at their highest level (ORT_ENABLE_ALL). ONNX Runtime on the ONNX target's default
graph (the trained bicubic Resize) is also timed for the segmentation models, labelled as a
different graph: its Resize is slow, and a ratio against it measures bicubic, not the runtimes.

For each case, every artifact is exported by edgekit, then all are timed back to back in blocks in
one round robin (benchmarks/_timing.py), 2 threads each: TFLite (ai-edge-litert, XNNPACK) fp32,
fp16, int8-dynamic, int8; ExecuTorch (executorch.runtime, XNNPACK) fp32, int8; ONNX Runtime CPU;
PyTorch eager (denormals flushed). Reported: median ms,
ratio to the fair ONNX Runtime peer, int8 over fp32, and achieved GFLOP/s (2 x MACs / latency)
against XNNPACK's own large fp32 GEMM (one 1024x1024 by 1024x1024 FULLY_CONNECTED, the best rate
this runtime reaches here; measured at the start and the end of the run). The cores' FMA rate at the
clock /proc/cpuinfo reports (cores x clock x 2 FMA pipes x 16 lanes x 2, AVX-512 on Zen 5) is
recorded too, but it is no ceiling here: the VM reports the base clock, and XNNPACK's GEMM ran above
it (502 against 332 GFLOP/s), so the cores boost to ~1.5x that clock. Each
artifact's held-out verification is kept. Random-weight stand-ins (no checkpoints offline).

    python benchmarks/runtime_speed.py [--runs 20] [--quick] [--out benchmarks/results/runtime_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _timing import time_round_robin

from edgekit.calibration.images import image_batch
from edgekit.complexity import measure
from edgekit.deploy import Upsample
from edgekit.export import ExportOptions, export
from edgekit.reference import source_model
from edgekit.registry import get_variant, parse_resolution
from edgekit.targets.executorch import ExecuTorchRunner
from edgekit.targets.onnx import ONNXRunner
from edgekit.targets.tflite.runner import TFLiteRunner

CASES = [("b0-seg", "512x1024"), ("b1-seg-ade20k", "512x512"), ("b1-cls", "224"), ("m0-cls", "224")]
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
THREADS = 2
FAIR = "onnxruntime (exact upsample)"
BICUBIC = "onnxruntime (bicubic Resize: another graph)"


def fma_peak_gflops() -> dict:
    """THREADS cores x clock x 2 FMA pipes x 16 fp32 lanes (AVX-512) x 2 flops at the clock /proc/cpuinfo
    reports: the base clock in this VM, so not a ceiling (XNNPACK's GEMM exceeds it)."""
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())]
    ghz = max(mhz) / 1000 if mhz else None
    return {"clock_ghz": ghz, "gflops": THREADS * ghz * 2 * 16 * 2 if ghz else None,
            "assumes": "2 x 512-bit FMA pipes per core (Zen 5) at the clock /proc/cpuinfo reports; the VM shows "
                       "the base clock, not the boost the cores run at, so this is not a ceiling"}


def xnnpack_gemm(runs: int) -> dict:
    """XNNPACK's own large GEMM, fp32 and int8: one FULLY_CONNECTED of 1024x1024 by 1024x1024."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    n = 1024
    inp = tf.keras.Input((n, n), batch_size=1)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(n, use_bias=False)(inp))
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(4):
            yield [rng.standard_normal((1, n, n), dtype=np.float32)]

    fns = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("fp32", "int8"):
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            if name == "int8":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.representative_dataset = rep
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(conv.convert())
            it = Interpreter(model_path=str(path), num_threads=THREADS)
            it.allocate_tensors()
            d = it.get_input_details()[0]
            x = rng.standard_normal((1, n, n), dtype=np.float32)
            if d["dtype"] != np.float32:
                scale, zero = d["quantization"]
                x = np.clip(np.round(x / scale + zero), -128, 127).astype(d["dtype"])
            it.set_tensor(d["index"], x)
            fns[name] = it.invoke
        ms = time_round_robin(fns, runs)
    return {k: {"ms": v, "gflops": 2 * n**3 / (v / 1000) / 1e9} for k, v in ms.items()}


def _export(name: str, res: str, target: str, precision: str, out: Path, **kw) -> dict:
    t0 = time.perf_counter()
    m = export(ExportOptions(name, target, precision, res, output=out / f"{target}-{precision}-{len(kw)}", **kw))
    v = m.verification
    return {"path": m.model_path, "export_s": round(time.perf_counter() - t0, 1), "file_mb": m.file_bytes / 1e6,
            "sqnr_db_median": v["sqnr_db_median"], "sqnr_db_min": v["sqnr_db_min"], "agreement": v["agreement"],
            "passed": v["passed"]}


def _ort(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ONNXRunner(path, session=ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))


def bench_case(name: str, resolution: str, runs: int, out: Path) -> dict:
    variant = get_variant(name)
    size = parse_resolution(resolution, variant)
    macs = measure(variant, size).macs
    artifacts = {f"tflite {p}": _export(name, resolution, "tflite", p, out) for p in PRECISIONS}
    artifacts.update({f"executorch {p}": _export(name, resolution, "executorch", p, out) for p in ("fp32", "int8")})
    artifacts[FAIR] = _export(name, resolution, "onnx", "fp32", out, upsample=Upsample.EXACT)
    if variant.task == "seg":
        artifacts[BICUBIC] = _export(name, resolution, "onnx", "fp32", out)
    image = image_batch(variant, size)[:1]
    def runner(k: str, path: Path):
        if k.startswith("onnxruntime"):
            return _ort(path)
        return ExecuTorchRunner(path, THREADS) if k.startswith("executorch") else TFLiteRunner(path, THREADS)

    runners = {k: runner(k, a["path"]) for k, a in artifacts.items()}
    fns = {k: (lambda r=r: r.run(image)) for k, r in runners.items()}
    model, _ = source_model(variant, size, None)
    x = torch.from_numpy(image)
    fns["pytorch"] = lambda: model(x)
    torch.set_num_threads(THREADS)
    previous = torch.set_flush_denormal(True)
    with torch.no_grad():
        ms = time_round_robin(fns, runs)
    torch.set_flush_denormal(previous)
    rows = {}
    for k, t in ms.items():
        row = {"median_ms": t, "vs_fair_onnxruntime": t / ms[FAIR], "gflops": 2 * macs / (t / 1000) / 1e9}
        if k in artifacts:
            row.update({key: v for key, v in artifacts[k].items() if key != "path"})
        rows[k] = row
    rows["tflite int8"]["int8_speedup_over_fp32"] = ms["tflite fp32"] / ms["tflite int8"]
    rows["executorch int8"]["int8_speedup_over_fp32"] = ms["executorch fp32"] / ms["executorch int8"]
    return {"variant": variant.name, "resolution": list(size), "gmacs": macs / 1e9, "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="only b0-seg 512x1024 and m0-cls")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "runtime_speed.json")
    args = parser.parse_args()
    cases = [CASES[0], CASES[-1]] if args.quick else CASES
    report = {"threads": THREADS, "cpu": os.uname().machine, "fma_peak": fma_peak_gflops(),
              "xnnpack_gemm": xnnpack_gemm(args.runs), "cases": []}
    print(f"peaks: {report['xnnpack_gemm']} FMA {report['fma_peak']['gflops']} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, res in cases:
            case = bench_case(name, res, args.runs, Path(tmp) / name)
            report["cases"].append(case)
            for k, r in case["results"].items():
                extra = f"  SQNR {r['sqnr_db_median']:.1f}/{r['sqnr_db_min']:.1f} dB" if "sqnr_db_median" in r else ""
                print(f"{case['variant']:16s} {res:>9s} {k:44s} {r['median_ms']:8.2f} ms  x{r['vs_fair_onnxruntime']:.2f}"
                      f"  {r['gflops']:6.1f} GFLOP/s{extra}", flush=True)
    report["xnnpack_gemm_end"] = xnnpack_gemm(args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
