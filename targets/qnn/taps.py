"""A QNN artifact's intermediate tensors (`edgekit debug`): the graph it was compiled from (source.onnx,
the deploy form's own ONNX, quantised for the QDQ precisions) with the module outputs added as graph
outputs, compiled for the first device and run on the HTP simulator. A QDQ tensor is tapped as the
next op reads it (its DequantizeLinear), with its scale and zero point.

Adding outputs can change what the HTP compiler fuses (a tensor it kept inside a fused op must now be
written out), so these are the numerics of a close relative of the compiled model; the report says so.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from edgekit.targets.qnn.options import FP16_PRECISIONS, SOURCE
from edgekit.targets.qnn.worker import _call_worker, _htp, _simulator_available

FUSION_NOTE = ("the module outputs were added as outputs of a copy of the graph before compiling: the HTP compiler "
               "may fuse that copy differently from the artifact's own")


def _key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()


def _quantization(q, initializers: dict) -> dict | None:
    from onnx import numpy_helper

    scale, zero = (initializers.get(name) for name in q.input[1:3])
    if scale is None or zero is None:
        return None
    zero = numpy_helper.to_array(zero)
    info = np.iinfo(zero.dtype)
    return {"scale": float(numpy_helper.to_array(scale)), "zero_point": int(zero), "qmin": int(info.min),
            "qmax": int(info.max), "dtype": zero.dtype.name}


def _taps(job):
    import onnx

    from edgekit.targets.base import Tap, Taps
    from edgekit.targets.onnx import with_outputs

    _simulator_available()
    manifest = job.manifest
    source = Path(job.model_file) / SOURCE
    graph = onnx.load(str(source)).graph
    initializers = {i.name: i for i in graph.initializer}
    quantize = {n.input[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    dequantize = {n.input[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    taps = []
    for t in job.names.ordered():
        q = quantize.get(t.name)
        dq = dequantize.get(q.output[0]) if q is not None else None
        if dq is not None:
            taps.append(Tap(dq.output[0], f"{t.op}+QDQ", t.name, _quantization(q, initializers)))
        else:
            taps.append(Tap(t.name, t.op, t.name))
    exposed = job.work / "exposed.onnx"
    present = with_outputs(source, [tap.name for tap in taps], exposed)
    taps = [tap for tap in taps if tap.name in set(present)]
    outputs = [o.name for o in onnx.load(str(exposed), load_external_data=False).graph.output]
    device = manifest.target_options["device"][0]
    htp = _htp(device)
    fp16 = manifest.precision in FP16_PRECISIONS
    found: dict[str, dict] = {}

    def prepare(images: np.ndarray) -> None:
        job.progress(f"compiling the graph with its {len(taps)} module outputs for {device} and running it on the "
                     "HTP simulator")
        with tempfile.TemporaryDirectory(prefix="edgekit-qnn-debug-") as tmp:
            np.save(Path(tmp) / "in.npy", np.ascontiguousarray(images, dtype=np.float32))
            _call_worker(["run-all", str(exposed), str(Path(tmp) / "in.npy"), str(Path(tmp) / "out.npz"),
                          str(htp.soc_model), str(htp.arch), "1" if fp16 else "0"], f"debug run on {device}")
            with np.load(Path(tmp) / "out.npz") as saved:
                for i, image in enumerate(images):
                    found[_key(image)] = {outputs[k]: saved[f"{i}:{k}"] for k in range(len(outputs))}

    def run(image: np.ndarray) -> dict:
        return found[_key(image[0])]

    return Taps(taps, run, f"the artifact's source graph compiled for {device} and run on Qualcomm's HTP simulator "
                           "(numerics, not latency)", notes=[FUSION_NOTE], prepare=prepare)
