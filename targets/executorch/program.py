"""The ExecuTorch program of a deploy form: `torch.export`, PT2E int8 with the XNNPACK quantizer, and the
lowering to XNNPACK; the conversion and the debugger's taps both build it here."""

from __future__ import annotations

from collections import Counter

import numpy as np

DELEGATE_CALL = "executorch_call_delegate"


def _op_name(node) -> str:
    """aten.convolution.default from an edge op's target (its str() carries the schema)."""
    name = str(node.target)
    return name.split(">")[0].replace("<EdgeOpOverload: ", "") if name.startswith("<") else name


def _op_counts(graph) -> Counter:
    """Ops by name; getitem (picking a delegate's or a split's outputs) is plumbing, left out."""
    import operator

    return Counter(_op_name(n) for n in graph.nodes if n.op == "call_function" and n.target is not operator.getitem)


def quantizer(keep_float: tuple[str, ...] = ()):
    """ExecuTorch's XNNPACK quantizer (int8 symmetric, per-channel weights); the modules named in
    `keep_float` (and everything inside them) left unannotated, so they stay float (fp32 XNNPACK ops)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    if keep_float:
        from torchao.quantization.pt2e.quantizer import get_module_name_filter

        kept = [get_module_name_filter(name) for name in keep_float]
        q.set_filter_function(lambda node: not any(f(node) for f in kept))
    return q


def export_program(model, size, calibration: np.ndarray | None = None, keep_float: tuple[str, ...] = ()):
    """(the exported program, before lowering); int8: PT2E-quantised with the XNNPACK quantizer,
    the modules in `keep_float` left float."""
    import torch

    x = torch.zeros(1, 3, *size)
    with torch.no_grad():
        exported = torch.export.export(model.eval(), (x,))
        if calibration is None:
            return exported
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        prepared = prepare_pt2e(exported.module(), quantizer(keep_float))
        for sample in calibration:
            prepared(torch.from_numpy(np.ascontiguousarray(sample[None])))
        return torch.export.export(convert_pt2e(prepared), (x,))


def lower(exported) -> tuple[bytes, dict, dict]:
    """(the .pte bytes, op histogram before lowering, what XNNPACK took and what it left)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgekit.logs import quiet_output

    before = _op_counts(exported.run_decompositions({}).graph)
    with quiet_output("executorch"):
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        after = _op_counts(edge.exported_program().graph_module.graph)
        program = edge.to_executorch()
    partitions = after.pop(DELEGATE_CALL, 0)
    portable = dict(sorted(after.items()))
    delegation = {"backend": "XnnpackBackend", "partitions": partitions,
                  "ops_total": sum(before.values()), "ops_in_xnnpack": sum(before.values()) - sum(portable.values()),
                  "ops_left_to_portable_kernels": portable}
    return program.buffer, dict(sorted(before.items())), delegation
