"""Running a .tflite here: ai-edge-litert (XNNPACK) on NCHW images, the model's real I/O, and LiteRT's
offline GPU-delegate compatibility check.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


class TFLiteRunner:
    """ai-edge-litert (XNNPACK) on NCHW float32 images: layout transposes and int8 I/O
    (de)quantisation happen here, from the model's own tensor details."""

    def __init__(self, path: Path | None = None, threads: int = 2, content: bytes | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=None if path is None else str(path), model_content=content,
                                       num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_nhwc(self) -> bool:
        shape = self.input["shape"]
        return len(shape) == 4 and shape[-1] == 3 and shape[1] != 3

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = x.transpose(0, 2, 3, 1) if self.input_nhwc else x
        scale, zero = self.input["quantization"]
        if self.input["dtype"] in (np.int8, np.uint8):
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        return np.ascontiguousarray(x, dtype=self.input["dtype"])

    def _finish(self, y: np.ndarray, expected_nchw: tuple[int, ...] | None) -> np.ndarray:
        scale, zero = self.output["quantization"]
        y = (y.astype(np.float32) - zero) * scale if self.output["dtype"] in (np.int8, np.uint8) else y
        if y.ndim == 4 and expected_nchw is not None and y.shape[1:] != tuple(expected_nchw[1:]):
            y = y.transpose(0, 3, 1, 2)  # onnx2tf emits NHWC feature maps
        return y.astype(np.float32)

    def run(self, images: np.ndarray, expected_nchw: tuple[int, ...] | None = None) -> np.ndarray:
        outs = []
        for img in images:
            self.interpreter.set_tensor(self.input["index"], self._prepare(img[None]))
            self.interpreter.invoke()
            outs.append(self._finish(self.interpreter.get_tensor(self.output["index"]), expected_nchw))
        return np.concatenate(outs)


def _layout(shape, classes: int) -> str:
    if len(shape) != 4:
        return "NC"
    return "NHWC" if shape[-1] == classes else "NCHW"


def io_description(path: Path, classes: int) -> dict:
    """The model file's real input and output tensors (names, shapes, layouts, types, int8 params)."""
    r = TFLiteRunner(path)
    inp, out = r.input, r.output

    def quant(d):
        scale, zero = d["quantization"]
        return {"scale": float(scale), "zero_point": int(zero)} if d["dtype"] in (np.int8, np.uint8) else None

    return {
        "input": {"name": inp["name"], "shape": [int(s) for s in inp["shape"]],
                  "layout": "NHWC" if r.input_nhwc else "NCHW", "dtype": np.dtype(inp["dtype"]).name,
                  "quantization": quant(inp)},
        "output": {"name": out["name"], "shape": [int(s) for s in out["shape"]], "layout": _layout(out["shape"], classes),
                   "dtype": np.dtype(out["dtype"]).name, "quantization": quant(out)},
    }


_OP_LINE = re.compile(r"^\s*Op#(\d+) (\w+)\(")


_GPU_WARNING = "GPU COMPATIBILITY WARNING: "


def gpu_compatibility(model_file: Path) -> dict:
    """Whether LiteRT's GPU delegate takes every node, checked offline by LiteRT's own model analyzer
    (the C++ ModelAnalyzer that tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)
    prints; ai-edge-litert ships the same wrapper, without TensorFlow's 20 s import)."""
    try:
        from ai_edge_litert import _pywrap_analyzer_wrapper as analyzer
    except ImportError:  # an ai-edge-litert without it: TensorFlow's copy of the same wrapper
        from tensorflow.lite.python import _pywrap_analyzer_wrapper as analyzer
    return parse_gpu_analysis(analyzer.ModelAnalyzer(str(model_file), True, True))


GPU_ANALYZER_CAVEAT = ("LiteRT's analyzer checks op support only, and in the ai-edge-litert 2.x and TensorFlow 2.21 "
                       "wheels it also passed a model of BUCKETIZE, TOPK_V2 and GATHER_ND (measured here): take a "
                       "pass as a hint, and verify on the phone (verify --device PHONE --delegate gpu)")


def parse_gpu_analysis(text: str) -> dict:
    """The analyzer's report (tflite/tools/model_analyzer.cc): "GPU COMPATIBILITY WARNING: why" under
    each node the delegate refuses, a per-subgraph summary line, or "Your model looks compatible with
    GPU delegate"; refused nodes fall back to the CPU on the phone."""
    refused, node = [], None
    for line in text.splitlines():
        op = _OP_LINE.match(line)
        if op:
            node = (int(op[1]), op[2])
        elif line.startswith(_GPU_WARNING) and node is not None and "has GPU delegate compatibility issues" not in line:
            refused.append({"node": node[0], "op": node[1], "why": line[len(_GPU_WARNING):].strip()})
            node = None
    compatible = "looks compatible with GPU delegate" in text and not refused
    version = re.search(r"GPU delegate (?:on|with) TFLite runtime version (\S+?)\.?$", text, re.M)
    return {"checked_by": "LiteRT ModelAnalyzer (gpu_compatibility=True)", "compatible": compatible,
            "runtime_version": version[1] if version else None, "refused": refused, "note": GPU_ANALYZER_CAVEAT}


def _runner(model_file: Path, manifest, threads: int = 2) -> TFLiteRunner:
    return TFLiteRunner(model_file, threads)
