"""Which PyTorch module each tensor of an exported graph is the output of.

torch.onnx's TorchScript exporter names every node after the modules it was called in
("/backbone/stages.0/op_list.1/main/depth_conv/conv/Conv"), so the deploy form's ONNX graph is the
bridge between PyTorch and every target: the ONNX and QNN artifacts keep these names, and the
TFLite and ExecuTorch matchers relate their own tensors to this graph. A module's output is the
output of the last node inside its scope (graph order is topological); a tensor that ends several
nested modules belongs to the innermost one (a conv, not the block around it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class GraphTensor:
    """One module output in the deploy form's ONNX graph."""

    name: str  # the ONNX tensor
    module: str  # the PyTorch module path (model.named_modules() spelling)
    op: str  # the ONNX op producing it
    order: int  # position of its producer in the graph
    call: int = 0  # which call of the module (a module called twice, like a shared ReLU: 0, 1)
    inputs: tuple[str, ...] = ()  # the nearest module outputs (or "image") it is computed from
    block: str = ""  # the top-level block it sits in, for labels


@dataclass
class GraphNames:
    tensors: dict[str, GraphTensor] = field(default_factory=dict)  # by ONNX tensor name
    by_module: dict[str, str] = field(default_factory=dict)  # module path -> ONNX tensor
    input_name: str = "image"

    def ordered(self) -> list[GraphTensor]:
        return sorted(self.tensors.values(), key=lambda t: t.order)


def _scope_segments(node_name: str) -> list[str]:
    return [s for s in node_name.split("/")[:-1] if s]


def _qualified(segments: list[str], modules: set[str]) -> tuple[str, int] | None:
    """(module path, call) of an exporter scope: a segment is a child's name ("stages.2" for item 2 of
    a ModuleList) or, inside a numbered container, repeats the container's own name ("aggreg.0.0"
    under "aggreg.0"); the exporter suffixes a module's second call with _1 ("kernel_func_1")."""
    path, call = "", 0
    for n, seg in enumerate(segments):
        base, _, suffix = seg.rpartition("_")
        if n == len(segments) - 1 and suffix.isdigit() and base and (f"{path}.{base}" if path else base) in modules:
            return (f"{path}.{base}" if path else base), int(suffix)
        joined = f"{path}.{seg}" if path else seg
        if joined in modules:
            path = joined
            continue
        parts = seg.split(".")
        for k in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:k])
            if path == prefix or path.endswith("." + prefix):
                candidate = path[: len(path) - len(prefix)] + seg
                if candidate in modules:
                    path = candidate
                    break
        else:
            return None
    return (path, call) if path else None


def _block(module: str) -> str:
    """The block a module sits in, for labels: its first two parts, and a third that numbers them
    (backbone.stages.2, backbone.input_stem, head.middle)."""
    parts = module.split(".")
    return ".".join(parts[:3] if len(parts) > 3 and parts[2].isdigit() else parts[:2])


def graph_names(onnx_path: Path, modules: set[str]) -> GraphNames:
    """The module outputs of the ONNX graph at `onnx_path`, exported from a model whose
    named_modules() are `modules`, with each one's nearest module-output inputs."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    constants = {i.name for i in graph.initializer}
    nodes = [n for n in graph.node if n.op_type != "Constant"]
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    last: dict[tuple[str, int], int] = {}  # (module path, call) -> index of its last node
    for i, node in enumerate(nodes):
        found = _qualified(_scope_segments(node.name), modules)
        if found is None:
            continue
        module, call = found
        parts = module.split(".")
        for k in range(1, len(parts)):  # every module around it (their first call)
            prefix = ".".join(parts[:k])
            if prefix in modules:
                last[(prefix, 0)] = i
        last[(module, call)] = i
    ends: dict[int, tuple[str, int]] = {}  # node index -> innermost module (call) it ends
    for key, i in last.items():
        if i not in ends or len(key[0]) > len(ends[i][0]):
            ends[i] = key
    names = GraphNames(input_name=graph.input[0].name)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    for i, (module, call) in sorted(ends.items()):
        out = nodes[i].output[0]
        names.tensors[out] = GraphTensor(out, module if not call else f"{module}#{call}", nodes[i].op_type, i, call,
                                         block=_block(module))
        names.by_module[names.tensors[out].module] = out
    # each module output's nearest module-output ancestors
    memo: dict[str, tuple[str, ...]] = {}

    def sources(tensor: str) -> tuple[str, ...]:
        if tensor in names.tensors:
            return (tensor,)
        if tensor in memo:
            return memo[tensor]
        if tensor == names.input_name:
            return (names.input_name,)
        i = producer.get(tensor)
        found: tuple[str, ...] = ()
        if i is not None:
            memo[tensor] = ()
            found = tuple(dict.fromkeys(s for x in nodes[i].input if x and x not in constants for s in sources(x)))
        memo[tensor] = found
        return found

    for name, t in list(names.tensors.items()):
        i = producer[name]
        ins = tuple(dict.fromkeys(s for x in nodes[i].input if x and x not in constants for s in sources(x)))
        names.tensors[name] = GraphTensor(t.name, t.module, t.op, t.order, t.call, ins, t.block)
    return names
