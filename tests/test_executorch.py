"""The ExecuTorch target: torch.export -> XNNPACK-lowered .pte, verified with executorch.runtime,
profiled with executor_runner (its host stand-in, also through the virtual adb device)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import every_variant_resolution
from edgekit.android_harness import executor_runner_output
from edgekit.android_harness.host_executor_runner import write_launcher
from edgekit.cli import app
from edgekit.export import ExportOptions, export
from edgekit.registry import VARIANTS

runner = CliRunner()

# executor_runner's ET_LOG lines as the default log sink prints them
# ("%c %02u:%02u:%02u.%06lu executorch:%s:%zu] %s", runtime/platform/default/posix.cpp)
RUNNER_NOW = """\
I 00:00:00.000321 executorch:executor_runner.cpp:181] Resetting threadpool with num threads = 4
I 00:00:00.031204 executorch:executor_runner.cpp:460] Model loaded in 30.562000 ms.
I 00:00:00.052881 executorch:executor_runner.cpp:640] Iteration 1 of 4: 21.400000 ms
I 00:00:00.062990 executorch:executor_runner.cpp:640] Iteration 2 of 4: 10.050000 ms
I 00:00:00.073001 executorch:executor_runner.cpp:640] Iteration 3 of 4: 9.950000 ms
I 00:00:00.083101 executorch:executor_runner.cpp:640] Iteration 4 of 4: 10.000000 ms
I 00:00:00.083200 executorch:executor_runner.cpp:650] Model executed successfully 4 time(s) in 51.400000 ms.
I 00:00:00.083250 executorch:executor_runner.cpp:658] 1 outputs: 
OutputX 0: tensor(sizes=[1, 19, 64, 128], [-0.0345, 0.112, ...])
"""
# an older runner: one execution, no time
RUNNER_OLD = """\
I 00:00:00.002 executorch:executor_runner.cpp:173] Model file model.pte is loaded.
I 00:00:00.010 executorch:executor_runner.cpp:252] Model executed successfully.
"""
RUNNER_FAILED = """\
I 00:00:00.031204 executorch:executor_runner.cpp:460] Model loaded in 30.562000 ms.
E 00:00:00.031300 executorch:method.cpp:1085] Missing operator: [0] aten::upsample_nearest2d.vec_out
F 00:00:00.031350 executorch:executor_runner.cpp:470] In function main(), assert failed (method.ok()): Loading of method forward failed with status 0x14
"""


def test_parse_executor_runner():
    p = executor_runner_output.parse(RUNNER_NOW)
    s = p.summary()
    assert p.complete and s["init_ms"] == pytest.approx(30.562) and s["first_ms"] == pytest.approx(21.4)
    assert s["runs"] == 3 and s["median_ms"] == pytest.approx(10.0)  # the first execution is the warm-up
    assert s["mean_ms"] == pytest.approx((10.05 + 9.95 + 10.0) / 3) and s["max_ms"] == pytest.approx(10.05)
    assert not executor_runner_output.parse(RUNNER_OLD).complete  # no timings: refused, not invented
    failed = executor_runner_output.parse(RUNNER_FAILED)
    assert not failed.complete and "Missing operator" in failed.errors[0] and len(failed.errors) == 2


# b1-cls (20-30 s) is slow: the default run keeps one model of each family; the slow run exports every variant
@pytest.mark.parametrize("name,res", [("b0-seg", "128x256"), pytest.param("b1-cls", "224", marks=pytest.mark.slow),
                                      ("m0-cls", None)])
def test_fp32_pte_matches_pytorch(shared_artifact, name, res):
    m = shared_artifact(name, "executorch", "fp32", res)
    v = m.verification
    assert v["passed"] and v["max_rel"] <= 1e-4 and v["compared"] == "the artifact, run by executorch.runtime (XNNPACK)"
    assert m.model_file == "model.pte" and (Path(m.artifact_dir) / "model.pte").stat().st_size > 1000
    d = m.target_info["delegation"]
    assert d["backend"] == "XnnpackBackend" and d["ops_in_xnnpack"] + sum(d["ops_left_to_portable_kernels"].values()) \
        == d["ops_total"]
    if name == "m0-cls":  # the bmm attention form: the whole graph in one XNNPACK partition
        assert d["partitions"] == 1 and d["ops_left_to_portable_kernels"] == {}
        from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count

        from edgekit.targets.executorch import ExecuTorchRunner

        for threads in (1, 2):  # a runner's threads reach ExecuTorch's own pool (torch's setting does not)
            ExecuTorchRunner(Path(m.artifact_dir) / "model.pte", threads)
            assert _threadpool_get_thread_count() == threads
    if name == "b0-seg":  # the polyphase upsample keeps the seg head in XNNPACK; outside stays only the
        # dim-order copy of the head's scalar 0 (the official `sum(...)` starts from it): no partition cut
        assert d["partitions"] == 1
        assert d["ops_left_to_portable_kernels"] == {"dim_order_ops._to_dim_order_copy.default": 1}
    assert "bmm_attention" in [r["name"] for r in m.rewrites] and m.target_info["executorch"]


def test_eval_runs_on_the_m0_pte(shared_artifact, tmp_path):
    import eval_data

    eval_data.check_m0_eval(shared_artifact("m0-cls", "executorch", "fp32"), tmp_path)


def test_int8_ranking_orders_every_layer_and_kept_ones_stay_float():
    """The keep-float recipe's pieces, without lowering: `ranking` lists every conv/linear, worst
    first, by its own int8 input and weights; `block_ranking` groups them into residual blocks; the
    quantizer leaves the kept modules (a block, single layers) unannotated (float input, float
    weights) and quantises the others."""
    import torch

    from edgekit.calibration.sources import calibration_set
    from edgekit.deploy import make_deploy_form
    from edgekit.int8.torch_side import block_ranking, ranking
    from edgekit.reference import source_model
    from edgekit.registry import get_variant, parse_resolution
    from edgekit.targets import get_target
    from edgekit.targets.executorch import export_program

    v = get_variant("b0-seg")
    size = parse_resolution("64x128", v)
    calib = calibration_set(v, size).data
    model, _ = source_model(v, size, None, "trained-like")
    form = make_deploy_form(model, size, get_target("executorch"), "int8", calibration=calib)
    order = ranking(form.model, calib[:4])
    layers = [n for n, m in form.model.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert sorted(n["node"] for n in order) == sorted(layers)
    finite = [n["sqnr_db_min"] for n in order if n["sqnr_db_min"] is not None]
    assert finite == sorted(finite) and 10 < finite[0] < 40, finite[:3]
    blocks = block_ranking(form.model, order)  # the search keeps whole residual blocks float
    assert sum(b["layers"] for b in blocks) == len(layers) and "backbone.stages.1.op_list.0" in [b["node"] for b in blocks]
    keep = (blocks[0]["node"], *(n["node"] for n in order[:3] if not n["node"].startswith(blocks[0]["node"] + ".")))
    graph = export_program(form.model, size, calib[:2], keep).graph_module.graph

    def fed_by_dequantize(node) -> bool:
        return all("dequantize" in str(getattr(a, "target", "")) for a in node.args[:2])

    convs = [n for n in graph.nodes if n.op == "call_function" and "conv" in str(n.target)]
    kept = [n for n in convs if any(path in keep for path, _ in n.meta["nn_module_stack"].values())]
    assert len(kept) >= blocks[0]["layers"] + 2 and not any(fed_by_dequantize(n) for n in kept)
    assert all(fed_by_dequantize(n) for n in convs if n not in kept)  # the rest: int8 input and weights


@pytest.mark.slow  # 65-86 s here; the default run exports ExecuTorch fp32 (conformance, the tests above)
def test_int8_pte_through_pt2e(tmp_path):
    m = export(ExportOptions("b0-seg", "executorch", "int8", "64x128", num_calibration=4, output=tmp_path,
                             target_options={"keep_float": 0}))
    assert "PT2E" in m.target_info["quantization"] and m.calibration["samples"] == 4
    assert m.target_info["int8"]["chosen_by"] == "--keep-float"
    v = m.verification
    assert v["finite"] and v["passed"] == (not v["failures"])  # reported on held-out photos, whatever it is
    assert not set(i["name"] for i in m.calibration["images"]) & set(i["name"] for i in v["images"])


@pytest.mark.slow  # every recipe is lowered to XNNPACK: minutes even at 64x128
def test_int8_recipe_search_runs_each_recipe_on_executorch(tmp_path):
    """The default int8: the recipe search, each recipe lowered and run by ExecuTorch's runtime on the
    odd calibration images' samples, calibrated on the even ones'; the artifact is the chosen recipe,
    which names as many kept blocks as it says it keeps."""
    m = export(ExportOptions("b0-seg", "executorch", "int8", "64x128", output=tmp_path))
    recipe = m.target_info["int8"]
    search = recipe["search"]
    assert recipe["chosen_by"] == "the recipe search" and search["tried"][0]["recipe"] == "full int8"
    assert "one split, not folds" in search["judged_on"] and search["calibrated_on"] == [4]
    assert search["chosen"] in [t["recipe"] for t in search["tried"]]
    assert all(t.get("speedup_over_float") for t in search["tried"])
    assert any("16-bit activations" == s["recipe"] for s in search["skipped"]) or search["tried"][0]["meets_goal"]
    assert len(recipe["kept_float"]) == recipe["keep_float"]
    assert m.verification["finite"] and m.verification["passed"] == (not m.verification["failures"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_exports_to_fp32_pte(tmp_path, name):
    m = export(ExportOptions(name, "executorch", "fp32", every_variant_resolution(name), output=tmp_path))
    assert m.verification["passed"], m.verification["failures"]


# slow: the TFLite adb round trips (tests/test_profile.py, tests/test_ondevice.py) stay in the default run
@pytest.mark.slow
def test_profile_on_the_host_and_through_adb(tmp_path, connect, monkeypatch, shared_artifact):
    m = shared_artifact("b0-seg", "executorch", "fp32", "64x128")
    results = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["profile", m.artifact_dir, "--device", "host", "--runs", "3", "--warmup", "1",
                            "--results", str(results), "--json"])
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)
    assert rec["harness"] == "executor_runner" and rec["runs"] == 3 and rec["median_ms"] > 0 and rec["first_ms"] > 0

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    program = tmp_path / "executor_runner"
    write_launcher(program)
    assert runner.invoke(app, ["harness", "add", str(program), "--kind", "executor_runner"]).exit_code == 0
    phone = connect()
    r = runner.invoke(app, ["profile", m.artifact_dir, "--device", "s8gen1", "--runs", "2", "--warmup", "1",
                            "--results", str(results), "--json"])
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)
    assert rec["device"]["profile"] == "s8gen1" and rec["runs"] == 2 and rec["target"] == "executorch"
    ran = next(c for c in phone.commands if "executor_runner" in c and "--model_path" in c)
    assert "--num_executions=3" in ran and "--cpu_threads=4" in ran and "taskset f0" in ran
    assert not phone.device_path("/data/local/tmp/edgekit").exists()
