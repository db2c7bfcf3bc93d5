"""edgekit.int8.search: the leave-images-out folds, the goal, the bisection and how the search treats a
recipe the runtime refuses (on stand-in measurements, so each rule is checked against a known answer)."""

import pytest


def _search(quality, budget=1e9):
    """A Search whose models are k (ops kept float) and whose SQNR is quality(k)."""
    from edgekit.int8.search import Goal, Search

    built = []
    s = Search(Goal(25, 20), budget, lambda k: {"sqnr_db_median": quality(k), "sqnr_db_min": quality(k) - 1,
                                               "agreement": 1.0, "agreement_min": 1.0, "agreement_kind": "x",
                                               "median_ms": 1.0 + k / 100}, float_ms=2.0)
    s.try_recipe("full int8", {"keep_float": 0}, lambda: built.append(0) or 0)
    s.fewest_kept(100, str, lambda k: {"keep_float": k}, lambda k: built.append(k) or k)
    return s, built


def test_the_folds_judge_every_image_with_a_model_not_calibrated_on_it():
    from edgekit.errors import EdgekitError
    from edgekit.int8.search import folds

    # samples 0-3 the photos, 4-7 crops of photos 0-3 in turn: one photo per fold
    assert folds(8, 4) == [([1, 2, 3, 5, 6, 7], [0, 4]), ([0, 2, 3, 4, 6, 7], [1, 5]),
                           ([0, 1, 3, 4, 5, 7], [2, 6]), ([0, 1, 2, 4, 5, 6], [3, 7])]
    split = folds(16, 8)  # 8 images in 4 folds of 2
    assert len(split) == 4 and split[1][1] == [1, 5, 9, 13]
    for fit, judge in split:
        assert not {j % 8 for j in fit} & {j % 8 for j in judge}  # whole images out, crops included
    assert sorted(j for _, judge in split for j in judge) == list(range(16))  # each sample judged once
    assert folds(6, 3)[2] == ([0, 1, 3, 4], [2, 5])
    with pytest.raises(EdgekitError, match="at least 2 distinct calibration images"):
        folds(4, 1)


def test_parse_goal_refusals():
    from edgekit.errors import EdgekitError
    from edgekit.int8.search import parse_goal

    assert parse_goal("30,22.5").min_db == 22.5
    for bad in ("25", "a,b", "20,25", "25,20,1,2", "25,20,-1"):
        with pytest.raises(EdgekitError, match="--int8-goal"):
            parse_goal(bad)


def test_bisection_finds_the_fewest_ops_kept_float():
    s, built = _search(lambda k: 10 + k / 2)  # meets 25/20 from k = 30 (median 25, min 24)
    chosen = s.choice()
    assert chosen["options"] == {"keep_float": 30} and chosen["meets_goal"]
    assert len(built) <= 2 + 7 and built[:2] == [0, 100]  # full int8, all float, then halving
    assert chosen["speedup_over_float"] == pytest.approx(2.0 / 1.30, abs=1e-3)
    s, _ = _search(lambda k: 10.0)  # nothing helps: all float fails too, so the bisection stops there
    chosen = s.choice()
    assert len(s.trials) == 2 and not chosen["meets_goal"]
    s, _ = _search(lambda k: 10 + k, budget=-1)  # out of time before the first build
    assert not s.trials and s.skipped[0]["recipe"] == "full int8"


def test_a_recipe_the_runtime_refuses_is_recorded_and_the_bisection_goes_shorter():
    """RecipeFailed (ExecuTorch: XNNPACK refuses some float/int8 mixes at run time): the recipe is
    listed as skipped with why, counts as missing the goal, and a refused top of the bisection is
    halved until one runs."""
    from edgekit.errors import EdgekitError
    from edgekit.int8.search import Goal, RecipeFailed, Search

    def measure(k):
        if k > 30:
            raise RecipeFailed("the runtime did not run it")
        q = 10 + k
        return {"sqnr_db_median": q, "sqnr_db_min": q - 1, "agreement": 1.0, "agreement_min": 1.0,
                "agreement_kind": "x", "median_ms": 1.0}

    s = Search(Goal(25, 20), 1e9, measure, float_ms=2.0)
    s.try_recipe("full int8", {"keep_float": 0}, lambda: 0)
    s.fewest_kept(100, lambda k: f"k={k}", lambda k: {"keep_float": k}, lambda k: k)
    assert [t["recipe"] for t in s.skipped] == ["k=100", "k=50"]
    assert "failed: the runtime did not run it" in s.skipped[0]["why"]
    assert s.choice()["options"] == {"keep_float": 15}  # meets from k = 15 (median 25, min 24)
    refused = Search(Goal(25, 20), 1e9, lambda k: measure(99), float_ms=2.0)
    refused.try_recipe("full int8", {"keep_float": 0}, lambda: 0)
    with pytest.raises(EdgekitError, match="ran no recipe within its budget .*full int8: failed"):
        refused.choice()


class _StandIn:
    """edgekit.int8.search.Recipes on stand-in measurements: a recipe's model is (equalized, k), its
    SQNR quality(equalized, k); every call recorded."""

    unit = "ops"
    no_int16 = "not here"

    def __init__(self, quality, equalization=None, units=40):
        self.quality, self.equalization, self.units, self.calls = quality, equalization, units, []

    def build(self, equalized, keep):
        self.calls.append(("build", equalized, len(keep)))
        return equalized, len(keep)

    def rank(self, equalized):
        self.calls.append(("rank", equalized))
        return [{"node": f"op{i}"} for i in range(self.units)]

    def prepare_equalized(self):
        self.calls.append(("prepare",))

    def measure(self, built):
        db = self.quality(*built)
        return {"sqnr_db_median": db, "sqnr_db_min": db - 1, "agreement": 1.0, "agreement_min": 1.0,
                "agreement_kind": "x", "median_ms": 1.0}


def _run(recipes):
    from edgekit.int8.search import Goal, Search, run_recipes

    search = Search(Goal(25, 20), 1e9, recipes.measure, 2.0)
    return search, run_recipes(search, recipes)


def test_the_recipe_order_full_int8_then_equalised_then_units_kept_float_on_the_better_graph():
    # equalisation helps but not enough; on the equalised graph 13 ops kept float meet the goal
    recipes = _StandIn(lambda eq, k: (18.0 if eq else 15.0) + (10.0 if k >= 13 else 0.0))
    search, (chosen, equalized, order) = _run(recipes)
    assert recipes.calls[:4] == [("build", False, 0), ("prepare",), ("build", True, 0), ("rank", True)]
    assert equalized and chosen["options"] == {"keep_float": 13, "equalized": True} and len(order) == 40
    assert [s["recipe"] for s in search.skipped] == ["16-bit activations"]


def test_an_equalisation_not_offered_is_skipped_with_why_and_full_int8_that_meets_stops_the_search():
    recipes = _StandIn(lambda eq, k: 10.0 + k, equalization="no pair in this graph")
    search, (chosen, equalized, _) = _run(recipes)
    assert ("prepare",) not in recipes.calls and not equalized
    assert search.skipped[0] == {"recipe": "cross-layer equalised (exact), full int8", "why": "no pair in this graph"}
    assert chosen["options"]["keep_float"] == 15  # the median 10 + k reaches 25 at k = 15, the worst 9 + k 20 before
    good = _StandIn(lambda eq, k: 30.0)
    _, (chosen, _, order) = _run(good)
    assert good.calls == [("build", False, 0)] and chosen["recipe"] == "full int8" and order is None


def test_a_recipe_record_round_trips_through_the_manifest():
    from edgekit.int8.recipe import CHOSEN_BY_SEARCH, Recipe

    r = Recipe(2, [{"node": "a"}, {"node": "b"}], CHOSEN_BY_SEARCH, {"activations": "int8"},
               {"measured_on": "x", "most_costly": []}, "cross_layer_equalization applied", {"chosen": "c"},
               ranking_key="sensitivity")
    record = r.to_json()
    assert record["activations"] == "int8" and record["sensitivity"]["measured_on"] == "x"
    assert Recipe.from_json(record) == r and r.rewrites == ("cross_layer_equalization",)
    fixed = Recipe(0, [], "--keep-float", {"weights": "int8"})
    assert "search" not in fixed.to_json() and Recipe.from_json(fixed.to_json()) == fixed and fixed.rewrites == ()


def test_the_goal_takes_a_speed_up_and_a_faithful_but_slow_recipe_is_not_worth_shipping():
    from edgekit.int8.search import Goal, Search, parse_goal, run_recipes, summary_lines, worth_it_line

    assert parse_goal("25,20") == Goal(25, 20, 1.2) and parse_goal("30,22,1.5") == Goal(30, 22, 1.5)
    assert parse_goal("25,20,0").min_speedup is None  # speed not judged
    recipes = _StandIn(lambda eq, k: 30.0)  # full int8 is faithful; measure() times it at 2x the float graph
    for min_speedup, met in ((1.5, True), (3.0, False), (None, True)):
        search = Search(Goal(25, 20), 1e9, recipes.measure, 2.0, min_speedup=min_speedup)
        chosen, _, _ = run_recipes(search, recipes)
        record = search.record(chosen, "--precision fp16", judged_on="x")
        assert record["met"] is met and record["fidelity_met"] and chosen["recipe"] == "full int8"
        line = worth_it_line(record)
        if met:
            assert line is None and record["instead"] is None
        else:
            assert line == ("int8 does not pay off here: the chosen recipe keeps the fidelity but runs at 2.00x the "
                            "float graph's speed here (goal 3x); use --precision fp16 instead")
            assert summary_lines(record)[-1] == line and "too slow" in summary_lines(record)[1]
    unmeasured = Search(Goal(25, 20), 1e9, lambda b: {**recipes.measure(b), "median_ms": None}, None, min_speedup=1.2)
    chosen, _, _ = run_recipes(unmeasured, recipes)
    assert chosen["fast_enough"] is None and unmeasured.record(chosen, "fp16")["met"]  # no runtime here: not judged
