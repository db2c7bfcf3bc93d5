"""ONNX: the deploy form exported with static shapes (opset 17), and what its graph contains."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.registry import Size

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
VERIFY = {"max_rel": 1e-4}  # an ONNX artifact against the PyTorch model it came from


def export_onnx(model: nn.Module, resolution: Size, path: str | Path, batch: int = 1) -> Path:
    """Trace `model` at a fixed input shape into an ONNX file (TorchScript exporter, constant folding)."""
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
