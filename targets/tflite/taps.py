"""A .tflite's intermediate tensors, matched to the deploy form's modules (`edgekit debug`).

onnx2tf names its tensors after Keras ops (tf.math.add_5/Add), not after the ONNX nodes, so the
match is made on what the conversion keeps: every convolution keeps its weights (transposed, fp16,
or int8 per channel), which tie a TFLite conv to its ONNX conv by correlation; from those anchors
the match follows the graph: an op whose inputs are matched, of the type the ONNX op converts to,
is that ONNX op. Layout ops onnx2tf inserts (PAD before a conv, QUANTIZE/DEQUANTIZE around float
ops) pass their match on. What stays unmatched is listed.

Every tensor is kept by running LiteRT's builtin kernels with `experimental_preserve_all_tensors`
and without the XNNPACK delegate (a delegated partition keeps none of its tensors): the same
operators, another kernel library, which the report says.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

# ONNX op -> the TFLite ops onnx2tf turns it into (an activation after a conv may be fused into it)
TFLITE_OPS = {
    "Conv": ("CONV_2D", "DEPTHWISE_CONV_2D"),
    "HardSwish": ("HARD_SWISH",),
    "Relu": ("RELU",),
    "Clip": ("RELU6", "RELU_0_TO_1", "MINIMUM", "MAXIMUM"),
    "Sigmoid": ("LOGISTIC",),
    "Tanh": ("TANH",),
    "Add": ("ADD",),
    "Sub": ("SUB",),
    "Mul": ("MUL",),
    "Div": ("DIV",),
    "Concat": ("CONCATENATION",),
    "Resize": ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"),
    "DepthToSpace": ("DEPTH_TO_SPACE",),
    "Gemm": ("FULLY_CONNECTED",),
    "MatMul": ("BATCH_MATMUL", "FULLY_CONNECTED"),
    "GlobalAveragePool": ("MEAN",),
    "ReduceMean": ("MEAN",),
}
PASS_ON = ("PAD", "QUANTIZE", "DEQUANTIZE")  # onnx2tf's and the quantiser's own: the same values
FUSABLE = {"Relu": "RELU", "Clip": "RELU6"}  # activations the converter folds into a conv before it
MIN_CORRELATION = 0.5


def _onnx_graph(path):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes = [n for n in graph.node if n.op_type != "Constant"]
    return nodes, constants, graph.input[0].name


class _TFLiteGraph:
    def __init__(self, interpreter):
        self.interpreter = interpreter
        self.tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        self.ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]  # noqa: SLF001
        self.producer = {int(o): op for op in self.ops for o in op["outputs"]}
        self.consumers: dict[int, list[dict]] = defaultdict(list)
        for op in self.ops:
            for i in op["inputs"]:
                if i >= 0:
                    self.consumers[int(i)].append(op)
        self.input = interpreter.get_input_details()[0]["index"]

    def constant(self, index: int) -> np.ndarray | None:
        """A constant input as float (int8 per channel dequantised; fp16 through its DEQUANTIZE)."""
        op = self.producer.get(index)
        if op is not None:
            return self.constant(int(op["inputs"][0])) if op["op_name"] == "DEQUANTIZE" else None
        if index == self.input:
            return None
        detail = self.tensors[index]
        try:
            value = self.interpreter.get_tensor(index)
        except ValueError:
            return None
        q = detail["quantization_parameters"]
        if value.dtype in (np.int8, np.uint8, np.int16) and len(q["scales"]):
            shape = [1] * value.ndim
            shape[q["quantized_dimension"]] = -1
            scales = np.asarray(q["scales"]).reshape(shape) if len(q["scales"]) > 1 else q["scales"][0]
            zeros = np.asarray(q["zero_points"]).reshape(shape) if len(q["zero_points"]) > 1 else q["zero_points"][0]
            return (value.astype(np.float64) - zeros) * scales
        return value.astype(np.float64)

    def data_inputs(self, op: dict) -> list[int]:
        return [int(i) for i in op["inputs"] if i >= 0 and self.constant(int(i)) is None]


def _oihw(op_name: str, weights: np.ndarray) -> np.ndarray:
    if op_name == "DEPTHWISE_CONV_2D":  # (1, H, W, C)
        return weights.transpose(3, 0, 1, 2)
    return weights.transpose(0, 3, 1, 2)  # CONV_2D (O, H, W, I)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return abs(float(a @ b)) / denominator if denominator > 0 else (1.0 if not a.any() and not b.any() else 0.0)


def match(tfl: _TFLiteGraph, onnx_path) -> dict[int, str]:
    """TFLite tensor index -> the deploy-form ONNX tensor it holds."""
    nodes, constants, onnx_input = _onnx_graph(onnx_path)
    consumers: dict[str, list] = defaultdict(list)
    for node in nodes:
        for x in node.input:
            consumers[x].append(node)
    matched: dict[int, str] = {tfl.input: onnx_input}
    alias: dict[int, int] = {}  # a PASS_ON op's output -> the tensor it passes on

    def root(index: int) -> int:
        while index in alias:
            index = alias[index]
        return index

    def output_of(node, tfl_op) -> str:
        """The ONNX tensor a TFLite op's output holds: the conv's, or the activation fused into it."""
        out = node.output[0]
        users = consumers.get(out, [])
        if node.op_type == "Conv" and len(users) == 1 and users[0].op_type in FUSABLE:
            direct = [c["op_name"] for c in tfl.consumers.get(int(tfl_op["outputs"][0]), [])]
            if FUSABLE[users[0].op_type] not in direct:
                return users[0].output[0]
        return out

    # anchors: convolutions whose weights correlate with one ONNX conv's far better than with any other
    convs = [n for n in nodes if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in constants]
    tfl_convs = [op for op in tfl.ops if op["op_name"] in TFLITE_OPS["Conv"]]
    weights = {id(op): tfl.constant(int(op["inputs"][1])) for op in tfl_convs}
    used_ops: set[int] = set()
    for node in convs:
        w = constants[node.input[1]]
        scored = sorted(((_correlation(w, _oihw(op["op_name"], weights[id(op)])), op) for op in tfl_convs
                         if weights[id(op)] is not None and _oihw(op["op_name"], weights[id(op)]).shape == w.shape),
                        key=lambda s: -s[0])
        if scored and scored[0][0] >= MIN_CORRELATION and (len(scored) == 1 or scored[0][0] - scored[1][0] > 0.2):
            op = scored[0][1]
            matched[int(op["outputs"][0])] = output_of(node, op)
            used_ops.add(int(op["index"]))
    # then along the graph: an op whose data inputs are matched to an ONNX op's data inputs
    changed = True
    while changed:
        changed = False
        for op in tfl.ops:
            out = int(op["outputs"][0])
            if out in matched or out in alias or int(op["index"]) in used_ops:
                continue
            ins = [root(i) for i in tfl.data_inputs(op)]
            if op["op_name"] in PASS_ON and len(ins) == 1 and ins[0] in matched:
                alias[out] = ins[0]
                changed = True
                continue
            if not ins or any(i not in matched for i in ins):
                continue
            wanted = {matched[i] for i in ins}
            for node in consumers.get(matched[ins[0]], []):
                if op["op_name"] not in TFLITE_OPS.get(node.op_type, ()):
                    continue
                if {x for x in node.input if x and x not in constants} != wanted:
                    continue
                if node.op_type == "Conv":
                    w = constants.get(node.input[1]) if len(node.input) > 1 else None
                    theirs = tfl.constant(int(op["inputs"][1]))
                    if w is None or theirs is None or _oihw(op["op_name"], theirs).shape != w.shape:
                        continue
                if node.output[0] in matched.values():
                    continue
                matched[out] = output_of(node, op)
                used_ops.add(int(op["index"]))
                changed = True
                break
    matched.pop(tfl.input)
    # a float tensor the next op reads through a QUANTIZE is tapped as that op sees it: quantised
    for out, source in alias.items():
        if source in matched and tfl.producer[out]["op_name"] == "QUANTIZE" and tfl.tensors[out]["dtype"] != np.float32:
            matched[out] = matched.pop(source)
    return matched


def tensor_modules(model_file, deploy_onnx, modules: set[str]) -> dict[str, str]:
    """Each matched tensor of a .tflite by name -> the PyTorch module whose output it holds."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgekit.graph_names import graph_names

    interpreter = Interpreter(model_path=str(model_file),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    tfl = _TFLiteGraph(interpreter)
    names = graph_names(deploy_onnx, modules)
    found = {}
    for index, tensor in match(tfl, deploy_onnx).items():
        if tensor in names.tensors:
            found[tfl.tensors[index]["name"]] = names.tensors[tensor].module
            op = tfl.producer.get(index)
            if op is not None and op["op_name"] == "QUANTIZE":  # the float tensor it quantises, by its own name
                found[tfl.tensors[int(op["inputs"][0])]["name"]] = names.tensors[tensor].module
    return found


def _quantization(detail: dict) -> dict | None:
    if detail["dtype"] not in (np.int8, np.uint8, np.int16):
        return None
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return {"scale": float(scale), "zero_point": int(zero), "qmin": int(info.min), "qmax": int(info.max),
            "dtype": np.dtype(detail["dtype"]).name}


def _taps(job):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgekit.targets.base import Tap, Taps
    from edgekit.targets.tflite.runner import TFLiteRunner

    interpreter = Interpreter(model_path=str(job.model_file), num_threads=job.threads,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    tfl = _TFLiteGraph(interpreter)
    job.progress("matching the TFLite graph to the deploy form (conv weights, then the graph around them)")
    matched = match(tfl, job.deploy_onnx)
    def op_of(index: int) -> str:  # a QUANTIZE's output is named after the op it quantises
        op = tfl.producer[index]
        inner = tfl.producer.get(int(op["inputs"][0])) if op["op_name"] == "QUANTIZE" else None
        return f"{inner['op_name']}+QUANTIZE" if inner is not None else op["op_name"]

    ops = {i: op_of(i) for i in matched}
    taps = [Tap(tfl.tensors[i]["name"], ops[i], t, _quantization(tfl.tensors[i]),
                "NHWC" if len(tfl.tensors[i]["shape"]) == 4 else "NCHW")
            for i, t in sorted(matched.items(), key=lambda kv: kv[0]) if t in job.names.tensors]
    index = {tfl.tensors[i]["name"]: i for i in matched}
    unmatched = [f"{op['op_name']} {tfl.tensors[int(op['outputs'][0])]['name']}" for op in tfl.ops
                 if op["op_name"] not in PASS_ON and int(op["outputs"][0]) not in matched]
    feeder = TFLiteRunner.__new__(TFLiteRunner)  # its input handling, on this interpreter
    feeder.interpreter, feeder.input = interpreter, interpreter.get_input_details()[0]

    def run(image: np.ndarray) -> dict:
        interpreter.set_tensor(feeder.input["index"], feeder._prepare(image))  # noqa: SLF001
        interpreter.invoke()
        got = {}
        for tap in taps:
            value = interpreter.get_tensor(index[tap.name])
            if tap.quantization is not None:
                value = (value.astype(np.float32) - tap.quantization["zero_point"]) * tap.quantization["scale"]
            got[tap.name] = value
        return got

    return Taps(taps, run, "the artifact, run by LiteRT's builtin kernels with every tensor kept (XNNPACK off: "
                           "a delegated partition keeps none of its tensors; same ops, another kernel library)",
                unmatched=unmatched)
