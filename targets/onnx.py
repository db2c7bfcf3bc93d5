"""ONNX: the deploy form exported with static shapes (opset 17), simplified with onnxsim, run on the
host by ONNX Runtime. Also the first step of the TFLite target and the source of the QNN target.

ONNX keeps the trained bicubic upsample by default (ONNX Resize has a cubic mode matching torch);
`--upsample exact` gives the same deploy form as TFLite's, the fair peer for speed comparisons.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import EdgekitError
from edgekit.registry import Size
from edgekit.targets.base import FP32_EXACT, Converted, ConvertJob, DeployPlan, TargetSpec, Upsample

if TYPE_CHECKING:
    import numpy as np
    import torch.nn as nn

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, resolution: Size, path: str | Path, batch: int = 1) -> Path:
    """Trace `model` at a fixed input shape into an ONNX file (TorchScript exporter, constant folding)."""
    import torch

    path = Path(path)
    x = torch.zeros(batch, 3, *resolution)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer chatter about constants: static shapes are the point
        torch.onnx.export(
            model.eval(),
            (x,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
        )
    return path


def simplify_onnx(src: Path, dst: Path) -> Path:
    """onnxsim's constant folding and cleanup, validated by onnxsim itself."""
    import onnx
    import onnxsim

    model, ok = onnxsim.simplify(onnx.load(str(src)))
    if not ok:
        raise EdgekitError("onnxsim could not validate the simplified graph")
    onnx.save(model, str(dst))
    return dst


def load_graph(path: str | Path):
    import onnx

    return onnx.shape_inference.infer_shapes(onnx.load(str(path)))


def op_histogram(model_proto) -> dict[str, int]:
    """Compute ops by type (Constant/Identity are graph plumbing, left out)."""
    counts = Counter(n.op_type for n in model_proto.graph.node if n.op_type not in ("Constant", "Identity"))
    return dict(sorted(counts.items()))


def max_tensor_rank(model_proto) -> int:
    g = model_proto.graph
    infos = [*g.value_info, *g.input, *g.output]
    return max(len(v.type.tensor_type.shape.dim) for v in infos)


def io_description(size: Size) -> dict:
    return {"input": {"name": INPUT_NAME, "shape": [1, 3, *size], "layout": "NCHW", "dtype": "float32",
                      "quantization": None},
            "output": {"name": OUTPUT_NAME, "layout": "NCHW", "dtype": "float32", "quantization": None}}


class ONNXRunner:
    """ONNX Runtime on NCHW float32 images. `session` may be given ready-made (the QNN target builds
    its own with the QNN execution provider)."""

    def __init__(self, path: Path, threads: int = 2, session=None):
        if session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.log_severity_level = 3  # errors only: its warnings go to stderr
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def run(self, images: np.ndarray, expected_nchw: tuple[int, ...] | None = None) -> np.ndarray:
        import numpy as np

        outs = [self.session.run(None, {self.input_name: np.ascontiguousarray(img[None])})[0] for img in images]
        return np.concatenate(outs).astype(np.float32)


def _runner(model_file: Path, manifest, threads: int = 2) -> ONNXRunner:
    return ONNXRunner(model_file, threads)


def _convert(job: ConvertJob) -> Converted:
    job.progress("exporting the deploy form to ONNX")
    onnx_path = export_onnx(job.deploy, job.size, job.work / "deploy.onnx")
    model_file = simplify_onnx(onnx_path, job.out / SPEC.model_file)
    return Converted(model_file, op_histogram(load_graph(model_file)), io_description(job.size))


SPEC = TargetSpec(
    name="onnx",
    summary="ONNX (opset 17, static shapes), run here by ONNX Runtime; a reference and comparison format",
    model_file="model.onnx",
    precisions=("fp32",),
    plan=DeployPlan(upsample=Upsample.BICUBIC, allowed_upsample=tuple(Upsample), fp16_compute=(),
                    int8_activations=()),
    convert=_convert,
    tolerances={"fp32": FP32_EXACT},
    runner=_runner,
    runner_label="ONNX Runtime (CPU)",
    not_profiled="ONNX is not a phone format here: export tflite, qnn or executorch for an Android phone",
    tools=("onnx", "onnxsim", "onnxruntime"),
    quiet_env={"ORT_LOG_SEVERITY_LEVEL": "3"},  # ONNX Runtime's own log lines
)
