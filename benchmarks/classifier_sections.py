"""Where b1-cls's TFLite time goes, against ONNX Runtime, section by section.

The TFLite fp32 goal (<= 0.8x ONNX Runtime) holds for the segmentation models and not for b1-cls.
ai-edge-litert has no per-op profiler, so this cuts the deploy form into prefixes (input stem, then
each backbone stage, then the head), converts each through edgekit's own pipeline (ONNX, onnxsim,
onnx2tf) and times every prefix in both runtimes (2 threads, back to back in blocks, rounds
interleaved in one run); a section's cost is the difference between consecutive prefixes.

    python benchmarks/classifier_sections.py     # writes results/classifier_sections.json
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch.nn as nn

from edgekit.deploy import make_deploy_form
from edgekit.reference import source_model
from edgekit.registry import get_variant
from edgekit.targets import get_target
from edgekit.targets.onnx import export_onnx
from edgekit.targets.tflite.convert import convert as tflite_convert
from edgekit.targets.tflite.options import Layout, Precision
from edgekit.targets.tflite.savedmodel import _sample_nhwc01

VARIANT, SIZE, THREADS, ROUNDS, RUNS = "b1-cls", (224, 224), 2, 7, 30


class Prefix(nn.Module):
    """The input stem and the first `k` backbone stages of a MIT EfficientViT."""

    def __init__(self, backbone: nn.Module, k: int):
        super().__init__()
        self.stem = backbone.input_stem
        self.stages = nn.ModuleList(backbone.stages[:k])

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


def _runners(module: nn.Module, work: Path, sample: np.ndarray, x: np.ndarray):
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    result = tflite_convert(export_onnx(module, SIZE, work / "p.onnx"), work, Precision.FP32,
                            Layout.NHWC, "image", sample)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # the fair peer's setting
    session = ort.InferenceSession(str(work / "deploy.sim.onnx"), options, providers=["CPUExecutionProvider"])
    interp = Interpreter(model_path=str(result.path), num_threads=THREADS)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    return sum(result.ops.values()), lambda: session.run(None, {"image": x}), interp.invoke


def main() -> None:
    variant = get_variant(VARIANT)
    model, _ = source_model(variant, SIZE, None)
    deploy = make_deploy_form(model, SIZE, get_target("tflite"), "fp32").model.eval()
    backbone = deploy.backbone
    pieces = {"input stem": Prefix(backbone, 0)}
    pieces.update({f"stage {k}": Prefix(backbone, k + 1) for k in range(len(backbone.stages))})
    pieces["head"] = deploy
    sample = _sample_nhwc01("imagenet", SIZE)
    x = np.random.default_rng(0).standard_normal((1, 3, *SIZE)).astype(np.float32)
    runners = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, module in pieces.items():
            work = Path(tmp) / name.replace(" ", "_")
            work.mkdir()
            runners[name] = _runners(module, work, sample, x)
        times = {name: ([], []) for name in runners}
        for _ in range(ROUNDS):
            for name, (_ops, ort_run, tfl_run) in runners.items():
                for run, store in ((ort_run, times[name][0]), (tfl_run, times[name][1])):
                    run()  # an untimed call first: the other runtime's threads may still be spinning
                    for _ in range(RUNS):
                        t0 = time.perf_counter()
                        run()
                        store.append(time.perf_counter() - t0)
    rows, prev = [], (0.0, 0.0)
    for name, (ort_t, tfl_t) in times.items():
        o, t = 1e3 * statistics.median(ort_t), 1e3 * statistics.median(tfl_t)
        rows.append({"section": name, "prefix_ops": runners[name][0], "prefix_ms": {"onnxruntime": o, "tflite": t},
                     "section_ms": {"onnxruntime": o - prev[0], "tflite": t - prev[1]},
                     "section_ratio": (t - prev[1]) / (o - prev[0])})
        print(json.dumps(rows[-1]), flush=True)
        prev = (o, t)
    out = Path(__file__).parent / "results" / "classifier_sections.json"
    out.write_text(json.dumps({"variant": VARIANT, "resolution": list(SIZE), "threads": THREADS, "rows": rows},
                              indent=1) + "\n")


if __name__ == "__main__":
    main()
