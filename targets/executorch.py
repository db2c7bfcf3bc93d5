"""ExecuTorch: PyTorch's own on-device format. The deploy form goes `torch.export` ->
`to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])` -> `.to_executorch()` -> model.pte,
run on the host by `executorch.runtime` (the same C++ runtime an app links, through its Python
bindings) and on phones by ExecuTorch's `executor_runner` (examples/portable/executor_runner).

`int8` is PyTorch's PT2E quantisation with ExecuTorch's XNNPACK quantizer (symmetric, per-channel
weights, int8 activations), calibrated on the calibration set, then lowered the same way; its recipe is
chosen at export time on the weights being exported (edgekit.int8_search: full int8, cross-layer
equalised (exact), the most costly blocks kept float), each recipe lowered and run by ExecuTorch's
own runtime on held-out calibration photos. The manifest records what XNNPACK took (delegate
partitions, the ops inside them) and every op left to ExecuTorch's portable kernels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.android_harness.harnesses import Harness, RunSettings, TensorIO
from edgekit.int8_search import EQUALIZED, searched_rewrites
from edgekit.targets.base import (
    FP32_EXACT,
    INT8,
    Converted,
    ConvertJob,
    DeployPlan,
    Packaging,
    TargetSpec,
    check_search_calibration,
    float_io,
    int8_goal_option,
    keep_float_option,
    search_budget_option,
    validate_int8_search,
)

MODEL_FILE = "model.pte"
DELEGATE_CALL = "executorch_call_delegate"
EXECUTORCH_ANDROID_MAVEN = "org.pytorch:executorch-android"


def _op_name(node) -> str:
    """aten.convolution.default from an edge op's target (its str() carries the schema)."""
    name = str(node.target)
    return name.split(">")[0].replace("<EdgeOpOverload: ", "") if name.startswith("<") else name


def _op_counts(graph) -> Counter:
    """Ops by name; getitem (picking a delegate's or a split's outputs) is plumbing, left out."""
    import operator

    return Counter(_op_name(n) for n in graph.nodes if n.op == "call_function" and n.target is not operator.getitem)


@dataclass(frozen=True)
class ExecuTorchOptions:
    keep_float: int | None = keep_float_option()
    int8_goal: str = int8_goal_option()
    search_budget: float = search_budget_option()


def _validate(precision: str, options: ExecuTorchOptions) -> None:
    validate_int8_search(precision, options)


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


class ExecuTorchRunner:
    """executorch.runtime on NCHW float32 images (what the artifact's own program computes), its
    XNNPACK threadpool (one per process) set to `threads`."""

    def __init__(self, path: Path, threads: int = 2):
        from executorch.runtime import Runtime

        from edgekit.logs import quiet_output
        from edgekit.threads import set_executorch_threads

        with quiet_output("executorch"):
            set_executorch_threads(threads)
            self.method = Runtime.get().load_program(str(path)).load_method("forward")
        self._ran = False

    def _execute(self, x: np.ndarray) -> np.ndarray:
        import torch

        return self.method.execute([torch.from_numpy(np.ascontiguousarray(x[None], dtype=np.float32))])[0].numpy()

    def run(self, images: np.ndarray, expected_nchw=None) -> np.ndarray:
        from edgekit.logs import quiet_output

        outs = []
        for x in images:
            if not self._ran:  # the first execution sets up the threadpool, whose cpuinfo lines print
                with quiet_output("executorch"):
                    outs.append(self._execute(x))
                self._ran = True
            else:
                outs.append(self._execute(x))
        return np.concatenate(outs).astype(np.float32)


def _runner(model_file: Path, manifest, threads: int = 2) -> ExecuTorchRunner:
    return ExecuTorchRunner(model_file, threads)


RANKING_SAMPLES = 4  # calibration samples the keep-float ranking is measured on
RANKING_RECORDED = 20  # the most costly modules listed in the manifest
NO_INT16_HERE = ("ExecuTorch's XNNPACK quantizer and kernels take 8-bit activations only "
                 "(w8a16 is the NPU's: --target qnn)")


def _int8_input(x, lo: float, hi: float):
    """`x` through int8 per-tensor affine quantisation over [lo, hi] (PT2E's min/max observer, XNNPACK's
    int8 activations)."""
    import torch

    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    return torch.clamp(torch.round((x - lo) / scale), 0, 255) * scale + lo


def _int8_weight(w):
    """`w` through int8 symmetric quantisation per output channel."""
    import torch

    scale = (w.abs().flatten(1).amax(dim=1) / 127).clamp_min(1e-12).view(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def _layer(m, x, w):
    """Layer `m` (a Conv2d with zero padding or a Linear) on input `x` with weights `w`."""
    import torch
    import torch.nn.functional as F

    if isinstance(m, torch.nn.Linear):
        return F.linear(x, w, m.bias)
    return F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)


def ranking(model, photos: np.ndarray) -> list[dict]:
    """Every convolution and linear layer, the most costly to quantise first: by the SQNR of its own
    output with its input through int8 per tensor (ranges from these photos, min/max as the
    quantizer's observers) and its weights through int8 per output channel, against its float output,
    on its worst photo. One pass to find the ranges, one to measure. The output, not the input, is
    judged because the per-channel spread that breaks trained EfficientViT hides in the input's SQNR
    (the wide channels carry its energy) and shows once the layer's weights amplify the narrow
    channels' rounding. A ranking only orders the layers; which prefix is enough, the search judges on
    the runtime."""
    import torch

    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) or (isinstance(m, torch.nn.Conv2d) and m.padding_mode == "zeros")]
    lo, hi = {n: float("inf") for n, _ in layers}, {n: float("-inf") for n, _ in layers}
    worst = {n: float("inf") for n, _ in layers}

    def observe(name, _m):
        def hook(_m, inputs, _out):
            x = inputs[0].detach()
            lo[name], hi[name] = min(lo[name], float(x.min())), max(hi[name], float(x.max()))
        return hook

    def measure(name, m):
        w = _int8_weight(m.weight.detach())

        def hook(_m, inputs, out):
            y = out.detach()
            noise = float(((y - _layer(m, _int8_input(inputs[0].detach(), lo[name], hi[name]), w)) ** 2).sum())
            db = float(10 * np.log10(float((y ** 2).sum()) / noise)) if noise > 0 else float("inf")
            worst[name] = min(worst[name], db)
        return hook

    for make in (observe, measure):
        hooks = [m.register_forward_hook(make(n, m)) for n, m in layers]
        try:
            with torch.no_grad():
                for x in photos:
                    model(torch.from_numpy(np.ascontiguousarray(x[None])))
        finally:
            for h in hooks:
                h.remove()
    # exact (a zero output, say): no finite SQNR, recorded as null and ranked last
    return [{"node": name, "op": type(m).__name__,
             "sqnr_db_min": round(worst[name], 2) if np.isfinite(worst[name]) else None}
            for name, m in sorted(layers, key=lambda layer: worst[layer[0]])]


# the residual units of both families (edgekit.models): MIT ResidualBlock and EfficientViTBlock,
# Microsoft Residual and EfficientViTBlock
BLOCK_CLASSES = ("ResidualBlock", "EfficientViTBlock", "Residual")


def _indexed_prefixes(name: str) -> list[str]:
    """The module paths above `name` that end in an index (a ModuleList's or Sequential's child)."""
    parts = name.split(".")
    return [".".join(parts[:i + 1]) for i, p in enumerate(parts[:-1]) if p.isdigit()]


def block_ranking(model, layers: list[dict]) -> list[dict]:
    """`ranking`'s layers grouped into the blocks they are kept float with, each block as costly as
    its most costly layer, most costly first. A layer's block is the outermost residual unit holding
    it (MIT: backbone.stages.2.op_list.0, an MBConv or LiteMLA block; Microsoft: blocks1.0), or the
    layer itself outside any (stems, heads). Whole blocks, because XNNPACK refuses to run most graphs
    with many single float convolutions between int8 ops (b0-seg 64x128: 9 or more did not run; whole
    blocks did), and a block's own adds and concats then go float with it."""
    units = [name for name, m in model.named_modules() if type(m).__name__ in BLOCK_CLASSES]
    held = Counter(p for layer in layers for p in _indexed_prefixes(layer["node"]))

    def unit(layer: str) -> str:
        above = [u for u in units if layer.startswith(u + ".")]
        if above:
            return min(above, key=len)
        # outside the residual units: the deepest indexed module holding more than one layer (a
        # patch merging, an exact upsample's phases), or the layer itself
        shared = [p for p in _indexed_prefixes(layer) if held[p] > 1]
        return shared[-1] if shared else layer

    blocks: dict[str, dict] = {}
    for layer in layers:  # most costly first, so a block's first layer is its worst
        u = unit(layer["node"])
        if u not in blocks:
            blocks[u] = {"node": u, "sqnr_db_min": layer["sqnr_db_min"], "worst_layer": layer["node"], "layers": 0}
        blocks[u]["layers"] += 1
    return list(blocks.values())


def _equalized(job: ConvertJob):
    """The equalisation recipe: a function of the calibration samples making the deploy form with the
    exact cross-layer equalisation, or why it is not offered."""
    import copy

    from edgekit.deploy.equalization import NO_PAIR, equalization_pairs
    from edgekit.deploy.passes import PASSES

    if not equalization_pairs(job.deploy):
        return NO_PAIR
    return lambda samples: PASSES["cross_layer_equalization"](copy.deepcopy(job.deploy), job.size, calibration=samples)


def _int8_recipe(k: int, kept: list[dict], order: list[dict] | None, chosen_by: str, measured_on: str) -> dict:
    return {"activations": "int8 per tensor, PT2E min/max observers", "weights": "int8 per channel, symmetric",
            "quantizer": "PT2E, XNNPACKQuantizer (get_symmetric_quantization_config(is_per_channel=True))",
            "keep_float": k, "kept_float": kept, "chosen_by": chosen_by,
            "ranking": None if order is None else {
                "measured_on": measured_on, "how": "each conv/linear's output SQNR with its own input (per tensor) "
                "and weights (per channel) in int8, in PyTorch; blocks (block_ranking) by their worst layer, worst "
                "first", "most_costly": order[:RANKING_RECORDED]}}


def _fixed_int8(job: ConvertJob):
    k = job.options.keep_float
    photos = job.calibration[:RANKING_SAMPLES]
    order = block_ranking(job.deploy, ranking(job.deploy, photos)) if k else None
    kept = order[:k] if order else []
    exported = export_program(job.deploy, job.size, job.calibration, tuple(n["node"] for n in kept))
    return exported, _int8_recipe(k, kept, order, "--keep-float", f"the first {len(photos)} calibration samples")


def _search_int8(job: ConvertJob):
    """The recipe search (edgekit.int8_search) on these weights: full int8; cross-layer
    equalised (exact; where the graph allows a pair); then, on whichever did better, the fewest most costly
    blocks kept float (bisection on `block_ranking`). Each recipe is calibrated on half the calibration
    images, lowered to XNNPACK and run by ExecuTorch's runtime on the other half's samples against
    the float deploy form (one split, not folds: each lowering takes about a minute at 128x256 here),
    and timed beside the float program; the artifact is the chosen recipe calibrated on all samples."""
    import tempfile

    from edgekit.errors import first_line
    from edgekit.int8_search import (
        RecipeFailed,
        Search,
        equalized_text,
        holdout,
        judged_on,
        median_ms,
        parse_goal,
        run_recipes,
        task_fields,
    )
    from edgekit.metrics import compare
    from edgekit.reference import run_images

    calibration, task, judge = job.calibration, job.variant.task, job.task_judge
    fit, judged = holdout(len(calibration), job.calibration_originals)
    reference = run_images(job.deploy, calibration[judged])
    scratch = Path(tempfile.mkdtemp(dir=job.work))

    def runner(buffer: bytes) -> ExecuTorchRunner:
        path = scratch / f"trial_{len(list(scratch.iterdir()))}.pte"
        path.write_bytes(buffer)
        return ExecuTorchRunner(path)

    job.progress("int8 search: lowering the float program (the speed reference)")
    float_runner = runner(lower(export_program(job.deploy, job.size))[0])
    float_ms = median_ms(lambda: float_runner.run(calibration[:1]))
    if judge is not None:
        job.progress(f"int8 search: scoring the float program on the {judge.goal.images} labelled images")
        float_metric = judge.score(float_runner.run).value()

    equalize = _equalized(job)
    models = {"": lambda _samples: job.deploy}
    if not isinstance(equalize, str):
        models[EQUALIZED] = equalize

    def build(prefix: str, keep: tuple[str, ...]) -> bytes:
        samples = calibration[fit]
        job.progress(f"int8 search: PT2E on {len(samples)} samples, lowering to XNNPACK")
        return lower(export_program(models[prefix](samples), job.size, samples, keep))[0]

    def measure(buffer: bytes) -> dict:
        trial = runner(buffer)
        try:
            outputs = trial.run(calibration[judged], reference.shape)
        except RuntimeError as e:  # measured: some float/int8 mixes lower but do not execute
            raise RecipeFailed(f"ExecuTorch's runtime did not run it ({first_line(e)})") from None
        c = compare(reference, outputs, task)
        m = {k: c[k] for k in ("sqnr_db_median", "sqnr_db_min", "agreement", "agreement_min", "agreement_kind")}
        m["median_ms"] = median_ms(lambda: trial.run(calibration[:1]))
        return m | (task_fields(judge, trial.run, float_metric) if judge else {})

    goal = parse_goal(job.options.int8_goal) if judge is None else judge.goal
    search = Search(goal, job.options.search_budget, measure, float_ms, job.progress)

    def rank(prefix: str) -> list[dict]:
        job.progress("int8 search: ranking the blocks by the cost of their layers' own int8 input and weights")
        base = models[prefix](calibration[fit])
        return block_ranking(base, ranking(base, calibration[fit][:RANKING_SAMPLES]))

    chosen, prefix, order = run_recipes(search, build, equalize if isinstance(equalize, str) else lambda: None,
                                        rank, "blocks", NO_INT16_HERE)
    k = chosen["options"]["keep_float"]
    kept = order[:k] if order else []
    job.progress(f"int8: {chosen['recipe']}, calibrated on all {len(calibration)} samples")
    exported = export_program(models[prefix](calibration), job.size, calibration, tuple(n["node"] for n in kept))
    recipe = _int8_recipe(k, kept, order, "the recipe search",
                          f"{RANKING_SAMPLES} of the calibration samples the recipes were calibrated on")
    recipe["equalized"] = equalized_text(len(calibration)) if prefix else None
    split = (f"the {len(judged)} samples of every second calibration image (of {job.calibration_originals}), each "
             f"recipe calibrated on the other images' {len(fit)} (one split, not folds: every recipe is lowered)")
    recipe["search"] = search.record(
        chosen, judged_on=judged_on(judge, split),
        reference="the float deploy form in PyTorch", calibrated_on=[len(fit)],
        artifact=f"the chosen recipe calibrated on all {len(calibration)} samples (its verification on the "
        "verification photos follows)")
    return exported, recipe


def _convert(job: ConvertJob) -> Converted:
    from importlib import metadata

    from edgekit.targets.onnx import io_description

    quantised = job.precision == "int8"
    recipe = None
    if not quantised:
        job.progress("torch.export")
        exported = export_program(job.deploy, job.size)
    elif job.options.keep_float is None:
        exported, recipe = _search_int8(job)
    else:
        job.progress(f"torch.export, PT2E int8 calibrated on {len(job.calibration)} samples")
        exported, recipe = _fixed_int8(job)
    job.progress("lowering to ExecuTorch with the XNNPACK partitioner")
    buffer, ops, delegation = lower(exported)
    model_file = job.out / MODEL_FILE
    model_file.write_bytes(buffer)
    info = {"executorch": metadata.version("executorch"), "delegation": delegation,
            "quantization": "PT2E, XNNPACKQuantizer: int8 symmetric, per-channel weights" if quantised else None}
    if recipe is not None:
        info["int8"] = recipe
    return Converted(model_file, ops, io_description(job.size), target_info=info,
                     searched_rewrites=searched_rewrites(recipe))


def _describe(manifest) -> list[str]:
    from edgekit.int8_search import summary_lines

    d = manifest.target_info["delegation"]
    left = ", ".join(f"{n} {op}" for op, n in sorted(d["ops_left_to_portable_kernels"].items())) or "none"
    lines = [f"XNNPACK: {d['ops_in_xnnpack']}/{d['ops_total']} ops in {d['partitions']} partition(s); "
             f"left to portable kernels: {left}"]
    recipe = manifest.target_info.get("int8")
    if recipe:
        n = recipe["keep_float"]
        lines.append(f"int8: {f'the {n} most costly blocks kept float' if n else 'full int8'} "
                     f"({recipe['chosen_by']})")
        if recipe.get("equalized"):
            lines.append(f"int8: {recipe['equalized']}")
        if recipe.get("search"):
            lines += summary_lines(recipe["search"])
    return lines


def _kotlin_runtime(manifest):
    from edgekit.bundle.kotlin import KotlinRuntime

    version = manifest.target_info.get("executorch")
    return KotlinRuntime(
        setup=(f'Gradle: implementation("{EXECUTORCH_ANDROID_MAVEN}:{version}") (the ExecuTorch that wrote this '
               "program; the AAR includes the XNNPACK backend)",
               f"Copy {MODEL_FILE} and the labels into src/main/assets/; Module.load reads a file, so the model is "
               "copied to the app's files folder once"),
        imports=("org.pytorch.executorch.EValue", "org.pytorch.executorch.Module", "org.pytorch.executorch.Tensor",
                 "java.io.File"),
        fields="private val module: Module",
        load="""val file = File(context.filesDir, MODEL_FILE)
if (!file.exists()) context.assets.open(MODEL_FILE).use { src -> file.outputStream().use { src.copyTo(it) } }
module = Module.load(file.absolutePath)""",
        run="""val shape = LongArray(INPUT_SHAPE.size) { INPUT_SHAPE[it].toLong() }
val result = module.forward(EValue.from(Tensor.fromBlob(input.asFloatBuffer(), shape)))[0].toTensor()
check(result.shape().contentEquals(LongArray(OUTPUT_SHAPE.size) { OUTPUT_SHAPE[it].toLong() })) {
    "$MODEL_FILE is not the model this class was generated for"
}
output.asFloatBuffer().put(result.dataAsFloatArray)""",
        close="module.destroy()",
        threads=False,  # XNNPACK's threadpool takes the performant cores itself
    )


def _snippet(spec: dict, manifest) -> tuple[str, str]:
    from edgekit.bundle import kotlin

    return kotlin.FILE_NAME, kotlin.snippet(spec, _kotlin_runtime(manifest))

# ---- on the phone: ExecuTorch's executor_runner ------------------------------------------------------
def _executor_runner_flags(model: str, run: RunSettings, device_dir: str) -> list[str]:
    """ExecuTorch's executor_runner (gflags of examples/portable/executor_runner): the first of the
    warmup + runs executions is the warm-up the parser leaves out."""
    return [f"--model_path={model}", f"--num_executions={run.warmup + run.runs}", f"--cpu_threads={run.threads}"]


def _executor_runner_parse(text: str):
    from edgekit.android_harness import executor_runner_output

    return executor_runner_output.parse(text)


def _executor_runner_io(io: dict, input_file: str, output_base: str) -> list[str]:
    return [f"--inputs={input_file}", f"--output_file={output_base}"]


HARNESS = Harness(
    name="executor_runner",
    binary="executor_runner",
    what="ExecuTorch's executor_runner built for Android arm64 with the XNNPACK backend "
         "(examples/portable/executor_runner, linked with xnnpack_backend)",
    delegates=("cpu",),
    flags=_executor_runner_flags,
    parse=_executor_runner_parse,
    host_module="edgekit.android_harness.host_executor_runner",
    no_op_profile_on_host="no per-op table: executor_runner writes ETDump files, not a table",
    # --inputs (raw bytes per input, comma-separated) and --output_file BASE (BASE-<i>.bin per output)
    tensor_io=TensorIO(_executor_runner_io, lambda base: f"{base}-0.bin",
                       "executorch examples/portable/executor_runner/executor_runner.cpp: --inputs, --output_file"),
)


SPEC = TargetSpec(
    name="executorch",
    summary="ExecuTorch .pte lowered to XNNPACK (Android/iOS CPU): PyTorch's own format, int8 through PT2E",
    model_file=MODEL_FILE,
    precisions=("fp32", "int8"),
    # XNNPACK in ExecuTorch takes 3-D batched matmuls, not the expand of broadcast 4-D ones
    plan=DeployPlan(exact_upsample_passes=("polyphase_upsample",), fp16_compute=(), int8_activations=("int8",),
                    attention_passes=("bmm_attention",), exact_passes=("explicit_tanh_gelu",)),
    convert=_convert,
    tolerances={"fp32": FP32_EXACT, "int8": INT8},
    runner=_runner,
    runner_label="executorch.runtime (XNNPACK)",
    options=ExecuTorchOptions,
    validate=_validate,
    check_calibration=check_search_calibration,
    packaging=Packaging("android", float_io, _snippet),
    harness=HARNESS,
    tools=("executorch", "torchao"),
    describe=_describe,
)
