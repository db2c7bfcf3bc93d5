"""int8 of a torch model, for the targets that quantise one (ExecuTorch's PT2E, coremltools'
LinearQuantizer): which layers and blocks cost most when quantised (`ranking`: each layer's own int8
input, per tensor with min/max ranges, and int8 weights, per output channel, judged at its output;
`block_ranking`: grouped into the residual blocks kept float together), and the recipe search those
targets run on it (`search_torch_model`, the recipe order of edgekit.int8.search.run_recipes). The
target supplies only how to quantise and how to run. Imports no torch at module level (the target
table imports this)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgekit.int8.recipe import CHOSEN_BY_FLAG, CHOSEN_BY_SEARCH, Recipe, equalized_text, ranking_record

RANKING_SAMPLES = 4  # calibration samples the keep-float ranking is measured on
RANKING_HOW = ("each conv/linear's output SQNR with its own input (per tensor) and weights (per channel) in int8, "
               "in PyTorch; blocks (block_ranking) by their worst layer, worst first")


def _int8_input(x, lo: float, hi: float):
    """`x` through int8 per-tensor affine quantisation over [lo, hi] (PT2E's min/max observer, XNNPACK's
    int8 activations)."""
    import torch

    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    return torch.clamp(torch.round((x - lo) / scale), 0, 255) * scale + lo


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

    from edgekit.deploy.passes import int8_weights

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
        w = int8_weights(m.weight.detach())

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


def equalized_form(deploy, size):
    """The equalisation recipe of an int8 search: a function of the calibration samples making a copy
    of `deploy` cross-layer equalised (exact), or why it is not offered."""
    import copy

    from edgekit.deploy.equalization import NO_PAIR, cross_layer_equalization, equalization_pairs

    if not equalization_pairs(deploy):
        return NO_PAIR
    return lambda samples: cross_layer_equalization(copy.deepcopy(deploy), size, calibration=samples)


def _recipe(quantiser: dict, k: int, kept: list[dict], order: list[dict] | None, chosen_by: str,
            measured_on: str, **search) -> Recipe:
    return Recipe(k, kept, chosen_by, quantiser, ranking_record(order, measured_on, how=RANKING_HOW), **search)


def fixed_recipe(deploy, calibration: np.ndarray, k: int, quantiser: dict) -> tuple[tuple[str, ...], Recipe]:
    """--keep-float N: the N most costly blocks (none for 0) and the recipe's record."""
    photos = calibration[:RANKING_SAMPLES]
    order = block_ranking(deploy, ranking(deploy, photos)) if k else None
    kept = order[:k] if order else []
    return tuple(n["node"] for n in kept), _recipe(quantiser, k, kept, order, CHOSEN_BY_FLAG,
                                                   f"the first {len(photos)} calibration samples")


@dataclass
class TorchSearch:
    """What `search_torch_model` chose: the deploy form to quantise for the artifact (equalised or
    not, on all calibration samples), the blocks to keep float, and the recipe's record."""

    model: object
    keep: tuple[str, ...]
    recipe: Recipe


@dataclass(frozen=True)
class TorchSearchRequest:
    """What a torch-side search works on, from the export's job (targets.base.ConvertJob): the deploy
    form, its calibration samples (and how many distinct images they came from), the goal (the
    labelled set's metric when `judge` is given) and the time budget."""

    deploy: object
    size: tuple[int, int]
    calibration: np.ndarray
    originals: int
    task: str
    goal: object
    budget_s: float
    judge: object = None
    progress: Callable[[str], None] = lambda _m: None
    min_speedup: float | None = None  # over the float program, where this host runs it

    @classmethod
    def of(cls, job) -> TorchSearchRequest:
        from edgekit.int8.search import parse_goal

        judge, goal = job.task_judge, parse_goal(job.options.int8_goal)
        return cls(job.deploy, job.size, job.calibration, job.calibration_originals, job.variant.task,
                   goal if judge is None else judge.goal, job.options.search_budget, judge, job.progress,
                   goal.min_speedup)


class TorchRecipes(Protocol):
    """What a target quantising a torch model gives the search: how to quantise a recipe, how to run
    what that built, the float program's time on this host (None: its runtime does not run here),
    why it offers no 16-bit activations, and its quantiser's facts for the record."""

    float_ms: float | None
    no_int16: str
    quantiser: dict
    instead: str  # what to ship when no int8 recipe pays off

    def quantize(self, model, samples: np.ndarray, keep: tuple[str, ...]) -> object: ...

    def run(self, built) -> Callable[[np.ndarray], np.ndarray]:
        """A function of images to outputs; it raises RecipeFailed where the runtime refuses the recipe."""


class _TorchSide:
    """edgekit.int8.search.Recipes over a torch model: each recipe quantised on every second
    calibration image (`holdout`) and judged on the others' samples against the float deploy form,
    through the target's runtime; the unit kept float is the residual block (`block_ranking`)."""

    unit = "blocks"

    def __init__(self, request: TorchSearchRequest, target: TorchRecipes):
        from edgekit.int8.search import holdout
        from edgekit.reference import run_images

        self.request, self.target, self.no_int16 = request, target, target.no_int16
        calibration = request.calibration
        self.fit, self.judged = holdout(len(calibration), request.originals)
        self.reference = run_images(request.deploy, calibration[self.judged])
        self.float_metric = None
        if request.judge is not None:
            request.progress(f"int8 search: scoring the float model on the {request.judge.goal.images} labelled "
                             "images")
            self.float_metric = request.judge.score(lambda x: run_images(request.deploy, x)).value()
        self.equalize = equalized_form(request.deploy, request.size)
        self.equalization = self.equalize if isinstance(self.equalize, str) else None
        self._equalized_on_fit = None  # made once: the equalisation is a pass over the calibration half

    def model(self, equalized: bool):
        """The graph a recipe quantises, on the calibration half."""
        if not equalized:
            return self.request.deploy
        if self._equalized_on_fit is None:
            self._equalized_on_fit = self.equalize(self.request.calibration[self.fit])
        return self._equalized_on_fit

    def prepare_equalized(self) -> None:
        self.model(True)

    def build(self, equalized: bool, keep: tuple[str, ...]):
        return self.target.quantize(self.model(equalized), self.request.calibration[self.fit], keep)

    def measure(self, built) -> dict:
        from edgekit.int8.search import median_ms, task_fields
        from edgekit.metrics import compare

        calibration, judge = self.request.calibration, self.request.judge
        outputs = self.target.run(built)
        c = compare(self.reference, outputs(calibration[self.judged]), self.request.task)
        m = {k: c[k] for k in ("sqnr_db_median", "sqnr_db_min", "agreement", "agreement_min", "agreement_kind")}
        m["median_ms"] = median_ms(lambda: outputs(calibration[:1])) if self.target.float_ms is not None else None
        return m | (task_fields(judge, outputs, self.float_metric) if judge else {})

    def rank(self, equalized: bool) -> list[dict]:
        self.request.progress("int8 search: ranking the blocks by the cost of their layers' own int8 input and "
                              "weights")
        base = self.model(equalized)
        return block_ranking(base, ranking(base, self.request.calibration[self.fit][:RANKING_SAMPLES]))


def search_torch_model(request: TorchSearchRequest, target: TorchRecipes) -> TorchSearch:
    """The int8 recipe search (edgekit.int8.search.run_recipes) of a target quantising a torch model,
    judged on one held-out split (each build is long: ExecuTorch lowers each recipe), timed beside
    the float program where its runtime runs here."""
    from edgekit.int8.search import Search, judged_on, run_recipes

    side = _TorchSide(request, target)
    search = Search(request.goal, request.budget_s, side.measure, target.float_ms, request.progress,
                    request.min_speedup)
    chosen, equalized, order = run_recipes(search, side)
    k = chosen["options"]["keep_float"]
    kept = order[:k] if order else []
    n, fit, judged = len(request.calibration), side.fit, side.judged
    split = (f"the {len(judged)} samples of every second calibration image (of {request.originals}), each recipe "
             f"calibrated on the other images' {len(fit)} (one split, not folds)")
    record = search.record(chosen, target.instead, judged_on=judged_on(request.judge, split),
                           reference="the float deploy form in PyTorch", calibrated_on=[len(fit)],
                           artifact=f"the chosen recipe calibrated on all {n} samples (its verification on the "
                           "verification photos follows)")
    recipe = _recipe(target.quantiser, k, kept, order, CHOSEN_BY_SEARCH,
                     f"{RANKING_SAMPLES} of the calibration samples the recipes were calibrated on",
                     equalized=equalized_text(n) if equalized else None, search=record)
    model = side.equalize(request.calibration) if equalized else request.deploy
    return TorchSearch(model, tuple(node["node"] for node in kept), recipe)
