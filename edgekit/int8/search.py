"""Choosing an int8 recipe at export time, on the weights being exported.

What breaks int8 depends on the weights: trained EfficientViT collapses under naive W8A8 (B1: 3.2% top-1,
FP 79.4) because of the per-channel spread of its depthwise/MBConv activations, which random weights do
not have, so no recipe measured on stand-ins can be a default. A target that quantises hands this module
its recipes in the order it expects them to run fastest; each is built, measured on calibration samples
held out of calibration (never the verification photos) against the same graph in float, and timed on
this host beside that float graph, and the search stops at the first that meets the goal. AIMET's
AutoQuant (choosing among CLE, bias correction and AdaRound by measured accuracy) is the model for
choosing by measurement.

The keep-K-ops-float step bisects on a sensitivity ranking: the cost of keeping ops float falls, roughly,
as K grows, so the smallest K meeting the goal is found in log2(ops) builds instead of one per K.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from edgekit.errors import EdgekitError

DEFAULT_GOAL = "25,20,1.2"
DEFAULT_BUDGET_S = 900.0
EQUALIZED = "cross-layer equalised (exact), "  # how the equalised recipes' names start, every target
MAX_FOLDS = 4  # cross-validation folds over the calibration images (each fold holds out 1/4 of them)


@dataclass(frozen=True)
class Goal:
    """SQNR in dB against the float graph, over the held-out samples: the median and the worst; and
    the speed-up over the float graph on this host an int8 recipe must show to be worth shipping
    (None: not asked). `met` judges the fidelity, which more ops kept float only improves (the
    bisection needs that); the speed is judged on the recipe the fidelity chose (Search.fast_enough)."""

    median_db: float
    min_db: float
    min_speedup: float | None = None

    def met(self, trial: dict) -> bool:
        return trial["sqnr_db_median"] >= self.median_db and trial["sqnr_db_min"] >= self.min_db

    def __str__(self) -> str:
        return f"{self.median_db:g}/{self.min_db:g} dB median/min"


def _goal_text(search: dict) -> str:
    speed = search.get("min_speedup")
    text = search.get("goal_text") or str(Goal(**search["goal"]))
    return text + (f" and {speed:g}x the float graph's speed on this host" if speed else "")


@dataclass(frozen=True)
class MetricGoal:
    """With a labelled set (`--eval-data` and `--max-drop`): the task metric (mIoU, top-1) of the
    recipe at most `max_drop` points (PSNR: dB) below the float graph's on that set's `images`."""

    metric: str
    max_drop: float
    images: int

    def met(self, trial: dict) -> bool:
        return trial.get("metric_drop") is not None and trial["metric_drop"] <= self.max_drop

    def __str__(self) -> str:
        from edgekit.accuracy import drop_units

        return f"{self.metric} at most {self.max_drop:g} {drop_units(self.metric)[1]} below the float graph's"


@dataclass(frozen=True)
class TaskJudge:
    """What export hands a searching target when the user gave `--eval-data` and `--max-drop`:
    `score(run)` scores `run(x, expected)` (a runner's: an NCHW batch and the NCHW logits shape to
    return) over the labelled set (edgekit.accuracy.Scores)."""

    goal: MetricGoal
    score: Callable[[Callable], object]


def parse_goal(text: str) -> Goal:
    """MEDIAN,MIN in dB and, optionally, SPEEDUP (0: speed not judged); without it, DEFAULT_GOAL's."""
    default_speedup = float(DEFAULT_GOAL.split(",")[2])
    try:
        values = [float(v) for v in text.split(",")]
        if len(values) not in (2, 3):
            raise ValueError
    except ValueError:
        raise EdgekitError(f"--int8-goal takes MEDIAN,MIN in dB and optionally the speed-up over the float graph, "
                           f"e.g. {DEFAULT_GOAL} (got {text!r})") from None
    median, minimum, speedup = (*values, default_speedup)[:3]
    if minimum > median:
        raise EdgekitError(f"--int8-goal {text}: the worst photo's SQNR (MIN) cannot exceed the median")
    if speedup < 0:
        raise EdgekitError(f"--int8-goal {text}: the speed-up must be 0 (not judged) or more")
    return Goal(median, minimum, speedup or None)


def validate_int8_search(precision: str, options, int8: str = "int8") -> None:
    """The checks every searching target makes of --keep-float, --int8-goal and --search-budget."""
    if options.keep_float is not None and precision != int8:
        raise EdgekitError(f"--keep-float needs --precision {int8} (it chooses which int8 ops stay float)")
    if options.keep_float is not None and options.keep_float < 0:
        raise EdgekitError(f"--keep-float must be 0 or more (got {options.keep_float})")
    if precision == int8:
        parse_goal(options.int8_goal)
        if options.search_budget <= 0:
            raise EdgekitError(f"--search-budget must be positive seconds (got {options.search_budget:g})")


def check_search_calibration(precision: str, options, calibration, int8: str = "int8") -> None:
    """A searching target's calibration check: the search's held-out photos need two distinct
    calibration images, refused before any work."""
    if precision == int8 and options.keep_float is None:
        folds(len(calibration.data), calibration.originals)


def folds(samples: int, originals: int, most: int = MAX_FOLDS) -> list[tuple[list[int], list[int]]]:
    """Leave-images-out cross-validation: (calibrate-on, judge-on) sample indices per fold. Sample j was
    made from original image j % originals (calibration/sources.py: the originals first, then seeded crops
    and flips of them in turn); the originals are dealt into min(originals, MAX_FOLDS) folds (image i into
    fold i % folds), and each fold judges its images' samples with a model calibrated on the others', so
    every calibration image is judged once, always by a model that did not calibrate on it."""
    if originals < 2:
        raise EdgekitError(f"the int8 recipe search holds calibration photos out to judge the recipes and needs "
                           f"at least 2 distinct calibration images (got {originals}): give more "
                           f"(--calibration, --num-calibration) or choose the recipe yourself with --keep-float N")
    n = min(originals, most)
    return [([j for j in range(samples) if j % originals % n != f], [j for j in range(samples) if j % originals % n == f])
            for f in range(n)]


def holdout(samples: int, originals: int) -> tuple[list[int], list[int]]:
    """One split instead of folds, for a target whose every build is long (ExecuTorch lowers each recipe
    to XNNPACK: about a minute at 128x256 here): (calibrate-on, judge-on), the images dealt into two
    halves, the odd ones judged by a model calibrated on the even ones'."""
    return folds(samples, originals, most=2)[1]


def bisect(lo: int, hi: int, passes: Callable[[int], bool | None]) -> int:
    """The smallest k in (lo, hi] with `passes(k)`, given that lo fails, hi passes and passing is
    monotone in k (keeping more float, leaving more out): log2(hi - lo) calls. `passes` returning
    None (out of budget) ends the search at the best k so far."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        verdict = passes(mid)
        if verdict is None:
            break
        lo, hi = (lo, mid) if verdict else (mid, hi)
    return hi


class RecipeFailed(EdgekitError):
    """A recipe the target could build but its runtime could not run (or the converter refused): the
    search records why and goes on, as if it missed the goal."""


@dataclass
class Search:
    """One search: `measure(built)` returns what `build()` made's SQNR (median/min) and agreement against
    the float graph on the held-out samples and its host latency; `float_ms` is the float graph's, timed
    in the same run (None where this host cannot run the target's runtime: then no speed is recorded).
    Only the trials are kept: the target builds the chosen recipe's artifact itself."""

    goal: Goal
    budget_s: float
    measure: Callable[[object], dict]
    float_ms: float | None
    progress: Callable[[str], None] = lambda _m: None
    min_speedup: float | None = None  # over the float graph, for the chosen recipe to be worth shipping
    trials: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def out_of_time(self) -> bool:
        return self.elapsed() > self.budget_s

    def skip(self, recipe: str, why: str) -> None:
        self.skipped.append({"recipe": recipe, "why": why})
        self.progress(f"int8 search: {recipe}: skipped ({why})")

    def try_recipe(self, recipe: str, options: dict, build: Callable[[], object]) -> dict | None:
        """Build and measure one recipe; None (and recorded as skipped) once the budget is spent; a
        recipe that fails (RecipeFailed) is recorded as skipped with why and counts as missing the goal."""
        if self.out_of_time():
            self.skip(recipe, f"the {self.budget_s:g} s search budget was spent")
            return None
        t0 = time.perf_counter()
        try:
            m = self.measure(build())
        except RecipeFailed as e:
            self.skip(recipe, f"failed: {e}")
            return {"recipe": recipe, "options": options, "failed": str(e), "meets_goal": False}
        trial = {"recipe": recipe, "options": options, **m,
                 "speedup_over_float": round(self.float_ms / m["median_ms"], 3)
                 if m.get("median_ms") and self.float_ms else None,
                 "seconds": round(time.perf_counter() - t0, 1)}
        trial["meets_goal"] = self.goal.met(trial)
        trial["fast_enough"] = self.fast_enough(trial)
        self.trials.append(trial)
        self.progress(f"int8 search: {recipe}: {trial['sqnr_db_median']:.1f}/{trial['sqnr_db_min']:.1f} dB, "
                      f"{_metric_text(trial)}{_speed_text(trial)} -> "
                      f"{'meets' if trial['meets_goal'] else 'below'} the goal ({self.goal})")
        return trial

    def fewest_kept(self, n: int, recipe_of: Callable[[int], str], options_of: Callable[[int], dict],
                    build: Callable[[int], object]) -> dict | None:
        """The smallest k in 1..n whose recipe meets the goal, assuming k = 0 did not: k = n first
        (if that misses, no k will; if it does not run, n halved until one runs), then `bisect`.
        Returns that trial, or None."""
        top = self.try_recipe(recipe_of(n), options_of(n), lambda: build(n))
        while top is not None and top.get("failed") and n > 1:  # the runtime refused it: a shorter prefix
            n //= 2
            top = self.try_recipe(recipe_of(n), options_of(n), lambda k=n: build(k))
        if top is None or not top["meets_goal"]:
            return None
        found = {n: top}

        def meets(k: int) -> bool | None:
            trial = self.try_recipe(recipe_of(k), options_of(k), lambda: build(k))
            if trial is not None:
                found[k] = trial
            return None if trial is None else trial["meets_goal"]

        return found[bisect(0, n, meets)]

    def fast_enough(self, trial: dict) -> bool | None:
        """Whether a recipe runs at least `min_speedup` times the float graph's speed here (None: not
        asked, or no runtime here to time it)."""
        if self.min_speedup is None or trial.get("speedup_over_float") is None:
            return None
        return trial["speedup_over_float"] >= self.min_speedup

    def choice(self) -> dict:
        """The first recipe (in the target's order: fastest expected first) that met the goal; when none
        did, the most faithful one tried (worst photo first), so verification reports what it costs."""
        if not self.trials:
            why = "; ".join(f"{s['recipe']}: {s['why']}" for s in self.skipped[:2])
            raise EdgekitError(f"the int8 recipe search ran no recipe within its budget ({why}); raise "
                               "--search-budget or choose one with --keep-float N")
        meeting = [i for i, t in enumerate(self.trials) if t["meets_goal"]]
        if meeting:
            # bisection tries larger k before smaller: among those meeting, the fewest ops kept float
            i = min(meeting, key=lambda j: (self.trials[j]["options"].get("keep_float", 0), j))
        elif isinstance(self.goal, MetricGoal):
            i = min(range(len(self.trials)), key=lambda j: self.trials[j]["metric_drop"])
        else:
            i = max(range(len(self.trials)), key=lambda j: (self.trials[j]["sqnr_db_min"],
                                                             self.trials[j]["sqnr_db_median"]))
        return self.trials[i]

    def record(self, chosen: dict, instead: str, **facts) -> dict:
        """The search for the manifest; `met`: the chosen recipe meets the fidelity goal and, where this
        host times it, the speed-up; `instead`: what to use when it does not (int8 does not pay off)."""
        met = chosen["meets_goal"] and chosen.get("fast_enough") is not False
        return {"goal": asdict(self.goal), "goal_text": str(self.goal), "min_speedup": self.min_speedup,
                "budget_s": self.budget_s, "seconds": round(self.elapsed(), 1), "float_ms": self.float_ms, **facts,
                "tried": self.trials, "skipped": self.skipped, "chosen": chosen["recipe"], "met": met,
                "fidelity_met": chosen["meets_goal"], "fast_enough": chosen.get("fast_enough"),
                "instead": None if met else instead}


class Recipes(Protocol):
    """What a quantising target gives the search: `build(equalized, keep)` makes one recipe (on the
    cross-layer equalised graph or not, the units named in `keep` float) for the search's `measure`;
    `rank(equalized)` orders the units by the cost of their quantisation, each entry's "node" what
    `build` keeps float (None: the budget ran out while ranking); `equalization` is None when the
    equalised graph is offered (then `prepare_equalized()` makes it) or why it is not; `unit` names
    what is kept float (ops, blocks); `no_int16` says why 16-bit activations are not searched."""

    unit: str
    no_int16: str
    equalization: str | None

    def build(self, equalized: bool, keep: tuple[str, ...]) -> object: ...

    def rank(self, equalized: bool) -> list[dict] | None: ...

    def prepare_equalized(self) -> None: ...


def run_recipes(search: Search, recipes: Recipes) -> tuple[dict, bool, list[dict] | None]:
    """The recipes every target searches, in order: full int8; if that misses the goal, the deploy form
    cross-layer equalised; if neither meets it, on the better of the two the fewest most costly units
    kept float (`Search.fewest_kept` on the ranking); 16-bit activations skipped with why. Returns
    (the chosen trial, whether it is on the equalised graph, the ranking it used)."""
    order: dict[bool, list[dict]] = {}
    eq_name = EQUALIZED + "full int8"
    full = search.try_recipe("full int8", {"keep_float": 0, "equalized": False}, lambda: recipes.build(False, ()))
    if full is not None and not full["meets_goal"]:
        if recipes.equalization is not None:
            search.skip(eq_name, recipes.equalization)
        elif search.out_of_time():
            search.skip(eq_name, f"the {search.budget_s:g} s search budget was spent")
        else:
            recipes.prepare_equalized()
            search.try_recipe(eq_name, {"keep_float": 0, "equalized": True}, lambda: recipes.build(True, ()))
        if search.trials and not any(t["meets_goal"] for t in search.trials):
            by_metric = isinstance(search.goal, MetricGoal)
            best = max(search.trials, key=lambda t: (-t["metric_drop"], 0) if by_metric
                       else (t["sqnr_db_min"], t["sqnr_db_median"]))
            equalized = best["options"]["equalized"]
            prefix, unit = EQUALIZED if equalized else "", recipes.unit
            ranked = None if search.out_of_time() else recipes.rank(equalized)
            if ranked is None:
                search.skip(f"{prefix}the most costly {unit} kept float",
                            f"the {search.budget_s:g} s search budget was spent (before or while ranking)")
            else:
                order[equalized] = ranked
                search.fewest_kept(len(ranked), lambda k: f"{prefix}the {k} most costly {unit} float",
                                   lambda k: {"keep_float": k, "equalized": equalized},
                                   lambda k: recipes.build(equalized, tuple(n["node"] for n in ranked[:k])))
        search.skip("16-bit activations", recipes.no_int16)
    chosen = search.choice()
    equalized = chosen["options"]["equalized"]
    return chosen, equalized, order.get(equalized)


def task_fields(judge, run: Callable, float_metric: float) -> dict:
    """A trial's task metric on the labelled set (`judge`, a TaskJudge) against the
    float graph's; nothing without a labelled set."""
    if judge is None:
        return {}
    from edgekit.accuracy import drop_units

    value = judge.score(run).value()
    return {"metric_name": judge.goal.metric, "metric": value, "metric_float": float_metric,
            "metric_drop": round(drop_units(judge.goal.metric)[0] * (float_metric - value), 3)}


def judged_on(judge, split: str) -> str:
    """What the recipes were judged on, for the record: `split` (the held-out calibration samples) or
    the labelled set."""
    if judge is None:
        return split
    return (f"the {judge.goal.images} labelled images of --eval-data (the set the export then evaluates on: not an "
            f"independent judge; SQNR: {split})")


def median_ms(run: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of `run` after one warm-up call, in ms."""
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 3)


def _speed_text(trial: dict) -> str:
    speed = trial.get("speedup_over_float")
    return "speed not measured here" if speed is None else f"{speed:.2f}x float on this host"


def _metric_text(trial: dict) -> str:
    if trial.get("metric_drop") is None:
        return ""
    from edgekit.accuracy import drop_units

    unit = drop_units(trial["metric_name"])[1]
    return f"{trial['metric_name']} {trial['metric']:.4f} ({0.0 - trial['metric_drop']:+.2f} {unit}), "


def summary_lines(search: dict) -> list[str]:
    """The search as `edgekit export` prints it (and the report shows)."""
    lines = [f"int8 recipe search (goal {_goal_text(search)}, on {search['judged_on']}; "
             f"{search['seconds']:g} s of a {search['budget_s']:g} s budget):"]
    for t in search["tried"]:
        mark = "*" if t["recipe"] == search["chosen"] else " "
        misses = ([] if t["meets_goal"] else ["below the goal"]) + (["too slow"] if t.get("fast_enough") is False else [])
        missed = f" ({', '.join(misses)})" if misses else ""
        lines.append(f" {mark} {t['recipe']}: {t['sqnr_db_median']:.1f}/{t['sqnr_db_min']:.1f} dB, "
                     f"{t['agreement_kind']} {t['agreement_min']:.3f} (worst), {_metric_text(t)}"
                     f"{_speed_text(t)}{missed}")
    lines += [f"   {s['recipe']}: skipped ({s['why']})" for s in search["skipped"]]
    lines.append(f"   chosen: {search['chosen']}")
    verdict = worth_it_line(search)
    return lines + ([verdict] if verdict else [])


def worth_it_line(search: dict) -> str | None:
    """One line when the chosen recipe is not worth shipping: why, and what to use instead."""
    if search.get("met", True):
        return None
    fidelity = search.get("fidelity_met", False)
    why = (f"the chosen recipe keeps the fidelity but runs at {_speed(search)} the float graph's speed here "
           f"(goal {search['min_speedup']:g}x)" if fidelity else "no recipe tried met the goal: the most faithful "
           "one was kept")
    return f"int8 does not pay off here: {why}; use {search.get('instead') or 'a float precision'} instead"


def _speed(search: dict) -> str:
    chosen = next((t for t in search["tried"] if t["recipe"] == search["chosen"]), {})
    speed = chosen.get("speedup_over_float")
    return "an unmeasured" if speed is None else f"{speed:.2f}x"
