"""QDQ graphs for QNN from onnxruntime's quantiser, their own semantics on ONNX Runtime's CPU, and
which ops run in which precision once the EP sees them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


# ---- conversion ----------------------------------------------------------------------------------------
class _Calibration:
    """onnxruntime.quantization's CalibrationDataReader over the calibration samples."""

    def __init__(self, name: str, samples: np.ndarray):
        self.feeds = iter([{name: np.ascontiguousarray(x[None], dtype=np.float32)} for x in samples])

    def get_next(self):
        return next(self.feeds, None)


def _quiet_quantize(src: Path, dst: Path, config) -> Path:
    """onnxruntime.quantization.quantize, its advice on the root logger kept off stderr."""
    import logging

    from onnxruntime.quantization import quantize

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize(str(src), str(dst), config)
    finally:
        root.setLevel(level)
    return dst


def _op_types(src: Path) -> list[str]:
    """Every op type of the graph but Constant: left to itself (op_types_to_quantize=None) the
    quantiser also quantises Constant nodes, the Resize scales and the attention floor among them,
    which broke b0-seg's w8a16 graph (docs/npu.md)."""
    import onnx

    return sorted({n.op_type for n in onnx.load(str(src), load_external_data=False).graph.node} - {"Constant"})


def qdq(src: Path, dst: Path, calibration: np.ndarray, precision: str, keep_fp16: tuple[str, ...] = (),
        ranges: dict | None = None) -> Path:
    """QDQ for QNN (onnxruntime's get_qnn_qdq_config): int8 per-channel weights; uint8 activations,
    min/max (`int8`; `mixed` quantises only the convolutions), or uint16 activations on `ranges`
    (`w8a16`, from `activation_ranges`); the nodes named in `keep_fp16` stay float."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    from edgekit.targets.onnx import INPUT_NAME

    overrides = None
    if precision == "w8a16":
        if ranges is None:
            raise ValueError("w8a16 QDQ takes its activation ranges (activation_ranges), widened")
        overrides = {name: [{"rmin": np.array(lo, np.float32), "rmax": np.array(hi, np.float32)}]
                     for name, (lo, hi) in ranges.items()}
        calibration = calibration[:1]  # the ranges are given: the quantiser's own pass only has to run
    config = get_qnn_qdq_config(str(src), _Calibration(INPUT_NAME, calibration),
                                activation_type=QuantType.QUInt16 if precision == "w8a16" else QuantType.QUInt8,
                                weight_type=QuantType.QInt8, per_channel=True, init_overrides=overrides,
                                op_types_to_quantize=["Conv"] if precision == "mixed" else _op_types(src),
                                nodes_to_exclude=list(keep_fp16) or None)
    return _quiet_quantize(src, dst, config)


def activation_ranges(src: Path, calibration: np.ndarray, work: Path, headroom: float) -> dict:
    """Every activation's min/max over the calibration samples (ONNX Runtime's MinMax calibrator,
    what the quantiser would compute), widened `headroom` times about zero."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from edgekit.targets.onnx import INPUT_NAME

    calibrator = create_calibrator(str(src), None, augmented_model_path=str(work / "ranges.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax)
    calibrator.collect_data(_Calibration(INPUT_NAME, calibration))
    found = calibrator.compute_data()
    ranges = {}
    for name in found.keys():
        if name == INPUT_NAME:
            continue  # the image: its range is the preprocessing's, not a photo's
        lo, hi = (float(np.asarray(v).ravel()[0]) for v in found[name].range_value)
        ranges[name] = (min(lo, 0.0) * headroom, max(hi, 0.0) * headroom)
    return ranges


def cpu_qdq(model: Path, images: np.ndarray) -> np.ndarray:
    """The QDQ graph's own semantics: ONNX Runtime's CPU with its graph optimisations off (so no
    fused integer kernel stands in for DequantizeLinear -> op -> QuantizeLinear)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[None]})[0] for x in images]).astype(np.float32)


def op_precisions(model_path: Path, float_label: str) -> dict[str, dict[str, int]]:
    """Per op type, how many run in each precision on the HTP: a QDQ node unit runs quantised (its
    inputs' integer types), every other op in `float_label` (fp16 when compiled so)."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    inits = {i.name: i for i in graph.initializer}
    dq_type = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            src = node.input[0]
            elem = inits[src].data_type if src in inits else None
            dq_type[node.output[0]] = onnx.TensorProto.DataType.Name(elem).lower() if elem else "int"
    producers = {o: n for n in graph.node for o in n.output}
    for node in graph.node:  # activations: DequantizeLinear of a QuantizeLinear's output
        if node.op_type == "DequantizeLinear" and node.input[0] in producers:
            q = producers[node.input[0]]
            zero = q.input[2] if len(q.input) > 2 else None
            dq_type[node.output[0]] = onnx.TensorProto.DataType.Name(inits[zero].data_type).lower() \
                if zero in inits else "int"
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node.op_type)
    found: dict[str, dict[str, int]] = {}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"):
            continue
        # a QDQ node unit (every computed input from DequantizeLinear, every output to QuantizeLinear)
        # runs quantised; any other op runs in float (a node left out of quantisation whose input is float)
        unit = all(i in dq_type for i in node.input if i in producers and producers[i].op_type != "Constant") \
            and all(consumers.get(o) and set(consumers[o]) == {"QuantizeLinear"} for o in node.output)
        types = sorted({dq_type[i] for i in node.input if i in dq_type}) if unit else []
        kind = "+".join(types) if types else float_label
        found.setdefault(node.op_type, {}).setdefault(kind, 0)
        found[node.op_type][kind] += 1
    return dict(sorted(found.items()))
