"""Running artifacts on this machine: TFLite through ai-edge-litert, ONNX through ONNX Runtime.

Every runner takes NCHW float32 images (already normalised) and returns NCHW float32 outputs, so
one comparison serves every target: layout transposes and int8 I/O (de)quantisation happen here,
from the model's own tensor details.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter (CUDA probes)

from pathlib import Path

import numpy as np

DEFAULT_THREADS = 2


class TFLiteRunner:
    def __init__(self, path: Path, threads: int = DEFAULT_THREADS):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
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


class ONNXRunner:
    def __init__(self, path: Path, threads: int = DEFAULT_THREADS):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, images: np.ndarray, expected_nchw: tuple[int, ...] | None = None) -> np.ndarray:
        return np.concatenate([self.session.run(None, {self.input_name: img[None]})[0] for img in images])


def runner_for(path: Path, threads: int = DEFAULT_THREADS):
    return TFLiteRunner(path, threads) if path.suffix == ".tflite" else ONNXRunner(path, threads)
