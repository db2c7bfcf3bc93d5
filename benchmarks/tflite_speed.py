"""edgekit's TFLite artifacts against ONNX Runtime and PyTorch on this machine (issue 4's benchmark).

For each case: export fp32 / fp16 / int8-dynamic / int8 TFLite and the ONNX artifact with edgekit
(export wall time recorded), then time, round-robin in one run so background load hits all alike:
TFLite (ai-edge-litert, XNNPACK, 2 threads), ONNX Runtime CPU (2 threads), PyTorch eager
(2 threads, denormals flushed). Reports median latency, the ratio to ONNX Runtime, achieved GFLOP/s
(2 x MACs / latency) next to this host's fp32 matmul rate measured in the same run, and each
artifact's verification numbers. Random-weight stand-ins (no checkpoints offline).

    python benchmarks/tflite_speed.py [--runs 10] [--quick] [--out benchmarks/results/tflite_speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from calibration.images import image_batch
from edgekit.complexity import measure
from edgekit.export import ExportOptions, export
from edgekit.reference import source_model
from edgekit.registry import get_variant, parse_resolution
from targets.onnx import ONNXRunner
from targets.tflite import TFLiteRunner

CASES = [("b0-seg", "512x1024"), ("b0-seg", "1024x2048"), ("b1-seg-ade20k", "512x512"), ("b1-cls", "224"),
         ("m0-cls", "224")]
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
THREADS = 2


def matmul_gflops(runs: int = 5) -> float:
    """This host's fp32 matrix-multiply rate with THREADS threads (PyTorch/oneDNN)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 1024**3 / statistics.median(times) / 1e9


def host_int8_conv_speedup(runs: int = 20) -> dict:
    """The host's own int8-vs-fp32 speed on plain convolutions: 1x1 and depthwise 3x3 convs with ReLU,
    converted by TFLiteConverter to fp32 and full int8, timed with XNNPACK in one round robin. This is
    the most int8 can gain on this host; on AVX2 without VNNI, XNNPACK's int8 GEMM has no faster
    instructions than fp32 FMA, while phones (ARM dot-product) do."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    inp = tf.keras.Input((64, 64, 128), batch_size=1)
    x = inp
    for _ in range(4):
        x = tf.keras.layers.Conv2D(256, 1, activation="relu")(x)
        x = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = tf.keras.layers.Conv2D(128, 1)(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(8):
            yield [rng.random((1, 64, 64, 128), dtype=np.float32)]

    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("fp32", "int8"):
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            if name == "int8":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.representative_dataset = rep
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(conv.convert())
            files[name] = path
        x = rng.random((1, 64, 64, 128), dtype=np.float32)
        fns = {}
        for k, f in files.items():
            it = Interpreter(model_path=str(f), num_threads=THREADS)
            it.allocate_tensors()
            d = it.get_input_details()[0]
            scale, zero = d["quantization"]
            feed = x if d["dtype"] == np.float32 else np.clip(np.round(x / scale + zero), -128, 127).astype(d["dtype"])

            def fn(it=it, idx=d["index"], feed=feed):
                it.set_tensor(idx, feed)
                it.invoke()

            fns[k] = fn
        ms = time_round_robin(fns, runs)
    return {"fp32_ms": ms["fp32"], "int8_ms": ms["int8"], "int8_speedup": ms["fp32"] / ms["int8"]}


ROUNDS = 5


def time_round_robin(fns: dict, runs: int) -> dict[str, float]:
    """Median ms of each fn over `runs` timed calls, taken back to back in blocks (the steady state
    benchmark_model measures), the blocks interleaved over ROUNDS rounds in rotating order so load
    drift hits all alike. Each block starts with an untimed call: ONNX Runtime's and OpenMP's worker
    threads spin for a while after a run and steal the cores from whichever runner comes next
    (measured: TFLite fp32 right after ONNX Runtime took 42 ms, 25 ms otherwise); and after an idle
    gap instead, small models pay thread wake-up (b1-cls: 13.9 ms after 0.1 s idle, 8.2 back to back)."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    keys = list(fns)
    per_round = max(1, -(-runs // ROUNDS))
    for i in range(ROUNDS):
        for k in keys[i % len(keys):] + keys[: i % len(keys)]:
            fns[k]()
            for _ in range(per_round):
                t0 = time.perf_counter()
                fns[k]()
                times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_case(name: str, resolution: str, runs: int, out: Path) -> dict:
    variant = get_variant(name)
    size = parse_resolution(resolution, variant)
    macs = measure(variant, size).macs
    artifacts = {}
    for target, precision in [("onnx", "fp32"), *(("tflite", p) for p in PRECISIONS)]:
        key = "onnxruntime" if target == "onnx" else f"tflite-{precision}"
        t0 = time.perf_counter()
        m = export(ExportOptions(name, target, precision, resolution, output=out))
        artifacts[key] = {"dir": m.artifact_dir, "file": m.model_file, "export_s": time.perf_counter() - t0,
                          "verification": m.verification, "file_mb": m.file_bytes / 1e6}
    image = image_batch(variant, size)[:1]
    model, _ = source_model(variant, size, None)
    runners = {k: (ONNXRunner if k == "onnxruntime" else TFLiteRunner)(Path(a["dir"]) / a["file"], THREADS)
               for k, a in artifacts.items()}
    fns = {k: (lambda r=r: r.run(image)) for k, r in runners.items()}
    x = torch.from_numpy(image)
    fns["pytorch"] = lambda: model(x)
    torch.set_num_threads(THREADS)
    previous = torch.set_flush_denormal(True)
    with torch.no_grad():
        ms = time_round_robin(fns, runs)
    torch.set_flush_denormal(previous)
    rows = {}
    for k, t in ms.items():
        row = {"median_ms": t, "vs_onnxruntime": t / ms["onnxruntime"], "gflops": 2 * macs / (t / 1000) / 1e9}
        if k in artifacts:
            a = artifacts[k]
            v = a["verification"]
            row.update(export_s=a["export_s"], file_mb=a["file_mb"], sqnr_db_min=v["sqnr_db_min"],
                       sqnr_db_median=v["sqnr_db_median"], max_rel=v["max_rel"], agreement=v["agreement"],
                       passed=v["passed"])
        rows[k] = row
    return {"variant": variant.name, "resolution": list(size), "gmacs": macs / 1e9, "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="only b0-seg 512x1024 and m0-cls")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tflite_speed.json")
    args = parser.parse_args()
    cases = [CASES[0], CASES[-1]] if args.quick else CASES
    report = {"threads": THREADS, "host_matmul_gflops": matmul_gflops(),
              "host_int8_conv": host_int8_conv_speedup(), "cases": []}
    print(f"host int8 vs fp32 on plain convs: {report['host_int8_conv']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, res in cases:
            case = bench_case(name, res, args.runs, Path(tmp))
            report["cases"].append(case)
            for k, r in case["results"].items():
                extra = f" min SQNR {r['sqnr_db_min']:.1f} dB export {r['export_s']:.0f}s" if "sqnr_db_min" in r else ""
                print(f"{case['variant']:18s} {res:>9s} {k:18s} {r['median_ms']:8.1f} ms  x{r['vs_onnxruntime']:.2f} ORT"
                      f"  {r['gflops']:6.1f} GFLOP/s{extra}", flush=True)
    report["host_matmul_gflops_end"] = matmul_gflops()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
