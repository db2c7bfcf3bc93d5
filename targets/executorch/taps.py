"""An ExecuTorch artifact's intermediate tensors, through ExecuTorch's devtools (`edgekit debug`).

ExecuTorch logs an op's outputs to its ETDump debug buffer only where the op runs as an instruction
of the program: inside an XNNPACK delegate nothing is logged. So the artifact's exported program
(the same deploy form and, for int8, the same PT2E quantisation on the recorded calibration set and
recipe) is lowered without the XNNPACK partitioner, run by ExecuTorch's runtime with ETDump and a
debug buffer, and read back by the devtools' Inspector with its ETRecord. Each op carries the
`nn_module_stack` torch.export recorded, so every output is named by its PyTorch module (a module's
second call is "@1" there, "#1" here). The same ops in ExecuTorch's portable kernels, not XNNPACK's:
the report says so. For int8, a module's output is its last float op (before PT2E's quantise op), so
the quantisation of a tensor is counted at the module that reads it, where PT2E puts it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

RAN = ("the artifact's exported program lowered without XNNPACK (ExecuTorch logs no tensor inside a delegate), "
       "run by ExecuTorch's runtime with ETDump and read by its devtools' Inspector: the same ops in its portable "
       "kernels")


def _debug_buffer_bytes(deploy_onnx) -> int:
    """Room for every op's output: twice the float32 bytes of all the deploy graph's tensors."""
    from edgekit.targets.onnx import load_graph

    graph = load_graph(deploy_onnx).graph
    total = 0
    for info in [*graph.value_info, *graph.output]:
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim]
        total += int(np.prod(dims)) * 4 if dims and all(dims) else 0
    return 2 * total + (16 << 20)


def _program(job):
    """The artifact's exported program, rebuilt as its export made it from the deploy form."""
    from edgekit.calibration.sources import calibration_from_record
    from edgekit.registry import get_variant
    from edgekit.targets.executorch.program import export_program

    manifest = job.manifest
    calibration = None
    keep: tuple[str, ...] = ()
    if manifest.spec.needs_calibration(manifest.precision):
        calibration = calibration_from_record(get_variant(manifest.variant), manifest.size, manifest.calibration).data
        keep = tuple(u["node"] for u in (manifest.target_info.get("int8") or {}).get("kept_float", []))
    return export_program(job.deploy, manifest.size, calibration, keep)


def _module_key(stack: dict) -> str | None:
    """The innermost module of an op's nn_module_stack, as edgekit.graph_names spells it."""
    if not stack:
        return None
    key = list(stack)[-1]
    path = stack[key][0]
    call = key.rpartition("@")[2] if "@" in key else ""
    return f"{path}#{call}" if call.isdigit() and call != "0" else path


def _taps(job):
    import executorch.kernels.quantized  # noqa: F401 - registers the out variants of the int8 (de)quantise ops
    import torch
    from executorch.devtools import Inspector, generate_etrecord
    from executorch.exir import to_edge
    from executorch.runtime import Runtime

    from edgekit.logs import quiet_output
    from edgekit.targets.base import Tap, Taps

    job.progress("rebuilding the artifact's exported program and lowering it without XNNPACK, for ETDump")
    with quiet_output("executorch"):
        edge = to_edge(_program(job))
        recorded = copy.deepcopy(edge)
        program = edge.to_executorch()
    work = Path(job.work)
    pte, etrecord = work / "debug.pte", work / "etrecord.bin"
    pte.write_bytes(program.buffer)
    with quiet_output("executorch"):
        generate_etrecord(str(etrecord), recorded, program)
    state = {"runs": 0}
    buffer_bytes = _debug_buffer_bytes(job.deploy_onnx)
    wanted = {t.module: t for t in job.names.tensors.values()}

    def run(image: np.ndarray) -> dict:
        # one program per image: its ETDump holds every run, the debug buffer only the last
        with quiet_output("executorch"):
            loaded = Runtime.get().load_program(str(pte), enable_etdump=True, debug_buffer_size=buffer_bytes)
            loaded.load_method("forward").execute([torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))])
            etdump, buffer = work / f"etdump{state['runs']}.etdp", work / f"debug{state['runs']}.bin"
            loaded.write_etdump_result_to_file(str(etdump), str(buffer))
            inspector = Inspector(etdump_path=str(etdump), etrecord=str(etrecord), debug_buffer_path=str(buffer))
        state["runs"] += 1
        last: dict[str, np.ndarray] = {}  # module -> the output of the last op inside it
        for block in inspector.event_blocks:
            for event in block.events:
                if not event.debug_data or not event.name.startswith("native_call") or not event.module_hierarchy:
                    continue
                if "quantize" in event.name:  # PT2E's (de)quantise ops: a module's output is the float before them
                    continue
                stacks = event.module_hierarchy
                module = _module_key(stacks[list(stacks)[-1]])
                value = event.debug_data[0]
                if module is not None and isinstance(value, torch.Tensor):
                    last[module] = value.float().numpy()
        return {module: value for module, value in last.items() if module in wanted}

    taps = [Tap(module, "portable kernels", t.name) for module, t in wanted.items()]
    return Taps(taps, run, RAN)
