"""w8a16 that the HTP computes as its QDQ graph says: the nodes to leave out of the quantiser,
found on calibration samples (the attention blocks, the dynamic MatMuls, then by bisection)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.targets.base import (
    INT8,
    ConvertJob,
)
from edgekit.targets.qnn.qdq import activation_ranges, cpu_qdq, qdq
from edgekit.targets.qnn.runner import QNNRunner
from edgekit.targets.qnn.worker import compile_for

# The search's constants; docs/npu.md ("The w8a16 search's constants") has the measurements behind each.
# Activation ranges widened about zero: min/max on a few calibration photos clips other photos' activations.
W8A16_HEADROOM = 2.0
# The HTP against ONNX Runtime's CPU on the same QDQ graph: below this it computes another function.
AGREEMENT_DB = 25.0
# The QDQ graph against the float graph: below this the 16-bit graph itself is broken; nothing to match.
QDQ_BROKEN_DB = 15.0
AGREEMENT_ROUNDS = 8  # nodes searched for and left out before giving up (the verification then reports)
# A round gaining less than this ends the search: the HTP is less precise everywhere, not one wrong op.
AGREEMENT_STEP_DB = 3.0


def _dynamic_matmuls(src: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] not in weights]


# why a node is left out of w8a16's quantiser, as the manifest records it
DYNAMIC_MATMUL = ("a MatMul of two activations: the QNN EP narrows its second 16-bit input to 8 bits "
                  "(onnxruntime-qnn PR #300, #793)")


ATTENTION = ("in an attention block: with the attention quantised too, the QDQ graph itself missed the "
             "int8 bars on the calibration samples")


FOUND = ("the HTP's result differed from the QDQ graph's until this node was left out of the quantiser "
         "(found by bisection)")


def _module_path(node_name: str) -> str:
    """The qualified name of the torch module a node was exported from. The exporter names a node by
    the modules it was called in, one segment per call, a container's child named with the container:
    /backbone/stages.2/op_list.1/context_module/main/MatMul (a ModuleList is never called) and
    /blocks1/blocks1.0/mixer/m/attn/MatMul (a Sequential is)."""
    path: list[str] = []
    for segment in node_name.strip("/").split("/")[:-1]:
        parts = segment.split(".")
        path = path[:-1] + parts if len(parts) > 1 and path and path[-1] == parts[0] else path + parts
    return ".".join(path)


def _nodes_under(src: Path, scopes: list[str]) -> list[str]:
    """The ONNX nodes exported from inside the torch modules named in `scopes`."""
    import onnx

    found = []
    for node in onnx.load(str(src), load_external_data=False).graph.node:
        module = _module_path(node.name)
        if node.op_type != "Constant" and any(module == s or module.startswith(f"{s}.") for s in scopes):
            found.append(node.name)
    return found


def _agreement(model: Path, folder: Path, device: str, samples: np.ndarray) -> float:
    """The worst sample's SQNR (dB) of the HTP's output against ONNX Runtime's CPU on the same QDQ graph."""
    from edgekit.metrics import sqnr_db

    compile_for(model, folder / device, device, True)
    htp = QNNRunner(folder, device, True).run(samples)
    cpu = cpu_qdq(model, samples)
    return min(float(sqnr_db(c, h)) for c, h in zip(cpu, htp))


def _w8a16(job: ConvertJob, src: Path) -> tuple[Path, dict]:
    """w8a16 that the HTP computes as the QDQ graph says, judged on calibration samples: the HTP
    compiled for the first device against the QDQ graph on ONNX Runtime's CPU. Ranges once (widened
    W8A16_HEADROOM times); the QDQ graph's own fidelity on ONNX Runtime's CPU, and below the int8
    bar's minimum the same with the attention blocks left out (ATTENTION), kept if better (below
    QDQ_BROKEN_DB the HTP is not searched: nothing is worth matching). Then the HTP: if it differs by
    more than AGREEMENT_DB, the dynamic MatMuls left out of the quantiser too (DYNAMIC_MATMUL; they
    then run fp16), kept if that agrees better; while they still differ, bisect the nodes in graph
    order for the shortest prefix whose leaving out restores agreement and leave out its last node,
    until a round gains less than AGREEMENT_STEP_DB. A node left out still runs quantised
    where the EP sees a QDQ unit around it (its output requantised for quantised consumers):
    `op_precisions` says what runs in what; docs/npu.md shows what it finds on each model."""
    import onnx

    from edgekit.deploy.attention import attention_scopes

    w = _W8A16(job, src)
    left_out: dict[str, str] = {}
    own = w.own_fidelity(left_out, "every op quantised")
    record = {"activation_headroom": W8A16_HEADROOM, "agreement_bar_db": AGREEMENT_DB, "qdq_vs_float_db": own,
              "qdq_broken_db": QDQ_BROKEN_DB, "agreement_device": w.device}
    attention = {name: ATTENTION for name in _nodes_under(src, attention_scopes(job.deploy))}
    if min(own) < INT8.sqnr_min_db and attention:
        without = w.own_fidelity(attention, f"the {len(attention)} nodes of the attention blocks left out")
        record["qdq_vs_float_db_attention_left_out"] = without
        if min(without) > min(own):
            left_out, own = attention, without
    if min(own) < QDQ_BROKEN_DB:  # the 16-bit graph itself misses: no node the HTP leaves out brings it back
        job.progress(f"w8a16: the QDQ graph itself is at {min(own):.1f} dB on samples its ranges came from: "
                     "the HTP is not searched")
        return w.build(left_out), {**record, "agreement": [], "trials": 0, "agreed": None,
                                   "left_out": _described(src, left_out)}
    db, chosen = w.check(left_out, "every op quantised" if not left_out else f"{_ops(len(left_out))} left out"), 0
    matmuls = {name: DYNAMIC_MATMUL for name in _dynamic_matmuls(src) if name not in left_out}
    if db < AGREEMENT_DB and matmuls:  # leaving them out can also make it worse: take the better
        without = w.check(matmuls, f"the {len(matmuls)} MatMuls of two activations left out")
        if without > db:
            left_out, db, chosen = {**left_out, **matmuls}, without, 1
    order = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node if n.op_type != "Constant"]
    left_out, db, checks = leave_out_nodes(order, left_out, db, w.agreement,
                                           lambda keep: w.check(keep, f"{_ops(len(keep))} left out"),
                                           AGREEMENT_ROUNDS + 2 - len(w.rounds), job.progress)
    chosen = len(w.rounds) - 1 if checks else chosen
    return w.checked[chosen], {**record, "agreement": w.rounds, "trials": w.trials, "agreed": db >= AGREEMENT_DB,
                               "left_out": _described(src, left_out)}


class _W8A16:
    """One w8a16 search's state: the QDQ graphs built so far (one per set of nodes left out), and each
    check of the HTP against the QDQ graph on the first calibration samples (`rounds`, and the graph
    each checked in `checked`)."""

    def __init__(self, job: ConvertJob, src: Path):
        from edgekit.deploy.passes import without_bias_correction
        from edgekit.reference import run_images

        self.job, self.src = job, src
        self.device, self.samples = job.options.device[0], job.calibration[:2]
        job.progress(f"w8a16: activation ranges on {len(job.calibration)} calibration samples "
                     f"(widened {W8A16_HEADROOM:g}x)")
        self.ranges = activation_ranges(src, job.calibration, job.work, W8A16_HEADROOM)
        # the float graph is the deploy form without bias correction, which shifts it on purpose
        self.reference = run_images(without_bias_correction(job.deploy), self.samples)
        self.built: dict[frozenset, Path] = {}
        self.trials = 0
        self.rounds: list[dict] = []
        self.checked: list[Path] = []

    def build(self, keep: dict) -> Path:
        key = frozenset(keep)
        if key not in self.built:
            self.built[key] = qdq(self.src, self.job.work / f"w8a16_{len(self.built)}.onnx", self.job.calibration,
                                  "w8a16", tuple(keep), self.ranges)
        return self.built[key]

    def agreement(self, keep: dict) -> float:
        self.trials += 1
        return _agreement(self.build(keep), self.job.work / f"agreement_{self.trials}", self.device, self.samples)

    def check(self, keep: dict, what: str) -> float:
        self.job.progress(f"w8a16: the HTP ({self.device}) against the QDQ graph on {len(self.samples)} calibration "
                          f"samples, {what}")
        db = self.agreement(keep)
        self.rounds.append({"left_out": len(keep), "db": round(db, 1)})
        self.checked.append(self.build(keep))
        return db

    def own_fidelity(self, keep: dict, what: str) -> list[float]:
        """The QDQ graph against the float graph on ONNX Runtime's CPU, per sample (dB)."""
        from edgekit.metrics import sqnr_db

        self.job.progress(f"w8a16: the QDQ graph against the float graph on {len(self.samples)} calibration samples "
                          f"(CPU), {what}")
        return [round(float(sqnr_db(r, q)), 1)
                for r, q in zip(self.reference, cpu_qdq(self.build(keep), self.samples))]


def leave_out_nodes(order: list[str], left_out: dict[str, str], db: float, agreement, check, rounds: int,
                    progress) -> tuple[dict[str, str], float, int]:
    """While the HTP disagrees (`db` below AGREEMENT_DB), one round: the shortest prefix of `order`,
    less what is already left out, whose leaving out makes `agreement` reach the bar (edgekit.int8's
    `bisect`), and leave out its last node; `check` measures the result. Stops after `rounds` rounds
    or at a round gaining less than AGREEMENT_STEP_DB (then no one node is the difference: the HTP's
    precision, not a wrong op). Returns (left out, its dB, the rounds run)."""
    from edgekit.int8.search import bisect

    done = 0
    while db < AGREEMENT_DB and done < rounds:
        rest = [n for n in order if n not in left_out]

        def agrees(k: int, rest=rest, left_out=left_out, db=db) -> bool:
            progress(f"w8a16: {db:.1f} dB, below {AGREEMENT_DB:g}: bisecting for the node ({len(rest)} candidates)")
            return agreement({**left_out, **dict.fromkeys(rest[:k], FOUND)}) >= AGREEMENT_DB

        # leaving out all of `rest` agrees (an fp16 graph); leaving out none does not
        left_out = {**left_out, rest[bisect(0, len(rest), agrees) - 1]: FOUND}
        before, db = db, check(left_out)
        done += 1
        if db < before + AGREEMENT_STEP_DB:
            break
    return left_out, db, done


def _described(src: Path, left_out: dict[str, str]) -> list[dict]:
    import onnx

    types = {n.name: n.op_type for n in onnx.load(str(src), load_external_data=False).graph.node}
    return [{"node": name, "op": types.get(name, "?"), "why": why} for name, why in left_out.items()]


def _ops(n: int) -> str:
    return f"{n} op" + ("" if n == 1 else "s")
