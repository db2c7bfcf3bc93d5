"""The QNN target: compiled offline for the phone's Hexagon HTP with onnxruntime-qnn, verified on
Qualcomm's x86 simulator, profiled over adb with ONNX Runtime's perf test (a stand-in on the
virtual device), packaged for Android."""

import json
import socket
import zipfile
from pathlib import Path

import pytest
from perf_test_standin import write_launcher
from typer.testing import CliRunner
from virtual_adbd import SM8450_PROPS

from conftest import every_variant_resolution
from edgekit.android_harness import perf_test_output
from edgekit.cli import app
from edgekit.export import ExportOptions, export
from edgekit.manifest import read_manifest
from edgekit.registry import VARIANTS
from edgekit.targets.qnn import SPEC as SPEC_QNN

runner = CliRunner()

# ---- verbatim onnxruntime_perf_test output ---------------------------------------------------------------
# 2020 (onnxruntime PR #2798): no space after the colon
PERF_2020 = """\
Setting intra_op_num_threads to 0
Session creation time cost:1.84149 s
Total inference time cost:0.734606 s
Total inference requests:1
Average inference time cost:734.606 ms
Total inference run time:0.734761 s
"""
# 2020 (onnxruntime issue #4647, on an Arm phone): CPU and memory lines
PERF_2020_ARM = """\
Session creation time cost: 0.127918 s
Total inference time cost: 1.44871 s
Total inference requests: 10
Average inference time cost: 144.871 ms
Total inference run time: 1.44916 s
Avg CPU usage: 68 %
Peak working set size: 158171136 bytes
"""
# 2023 (onnxruntime issue #17313): "time cost" without "inference", latencies "is ... sec"
PERF_2023 = """\
Total time cost: 58.8053
Total iterations: 1000
Average time cost: 58.8053 ms
Total run time: 58.8102 s
Min Latency is 0.0559777 sec
Max Latency is 0.0623472 sec
P50 Latency is 0.0587108 sec
P90 Latency is 0.0599845 sec
P95 Latency is 0.0605676 sec
P99 Latency is 0.0619517 sec
P999 Latency is 0.0623472 sec
"""
# current (performance_runner.cc: Run() and PerformanceResult::DumpToFile)
PERF_NOW = """\
Session creation time cost: 0.412 s
First inference time cost: 41 ms
Total inference time cost: 0.318 s
Total inference requests: 50
Average inference time cost: 6.36 ms
Total inference run time: 0.3194 s
Number of inferences per second: 156.5 
Avg CPU usage: 9 %
Peak working set size: 212340736 bytes
Min Latency: 0.00601 s
Max Latency: 0.00741 s
P50 Latency: 0.00631 s
P90 Latency: 0.00688 s
P95 Latency: 0.00702 s
P99 Latency: 0.00741 s
P999 Latency: 0.00741 s
"""
CRASH = """\
[E:onnxruntime:, qnn_backend_manager.cc:1102 LoadBackend] Unable to load backend. error: dlopen failed: library "libQnnHtpV75Stub.so" not found
"""


def test_parse_every_perf_test_form():
    s = perf_test_output.parse(PERF_2020).summary()
    assert s["mean_ms"] == pytest.approx(734.606) and s["init_ms"] == pytest.approx(1841.49) and s["runs"] == 1
    s = perf_test_output.parse(PERF_2020_ARM).summary()
    assert s["mean_ms"] == pytest.approx(144.871) and s["peak_memory_mb"] == pytest.approx(158171136 / 2**20)
    assert s["cpu_usage_pct"] == 68 and s["median_ms"] is None
    s = perf_test_output.parse(PERF_2023).summary()
    assert s["runs"] == 1000 and s["mean_ms"] == pytest.approx(58.8053) and s["median_ms"] == pytest.approx(58.7108)
    assert s["p90_ms"] == pytest.approx(59.9845) and s["max_ms"] == pytest.approx(62.3472)
    p = perf_test_output.parse(PERF_NOW)
    s = p.summary()
    assert p.complete and s["first_ms"] == 41 and s["median_ms"] == pytest.approx(6.31) and s["p95_ms"] == pytest.approx(7.02)
    crashed = perf_test_output.parse(CRASH)
    assert not crashed.complete and "libQnnHtpV75Stub.so" in crashed.errors[0]


# ---- export and verification on the simulator -----------------------------------------------------------
@pytest.fixture(scope="module")
def qnn_b0(tmp_path_factory):
    """b0-seg 128x256 compiled for s8gen1 and s8gen3, with every socket blocked (offline)."""
    out = tmp_path_factory.mktemp("qnn")
    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network")))
    try:
        m = export(ExportOptions("b0-seg", "qnn", "fp16", "128x256", target_options={"device": "s8gen1,s8gen3"},
                                 output=out))
    finally:
        mp.undo()
    return m


def test_fp16_b0_seg_compiles_for_two_phones_and_verifies_on_the_simulator(qnn_b0):
    m = qnn_b0
    art = Path(m.artifact_dir)
    assert sorted(p.name for p in (art / "model.qnn").iterdir()) == ["s8gen1", "s8gen3", "source.onnx"]
    for device, arch, soc in (("s8gen1", 69, 36), ("s8gen3", 75, 57)):
        info = m.target_info["devices"][device]
        assert (info["htp_arch"], info["soc_model"]) == (arch, soc) and info["context_bytes"] > 100_000
        assert (art / "model.qnn" / device / "model.onnx").is_file()
        assert (art / "model.qnn" / device / info["context_binaries"][0]).is_file()
    assert m.target_info["qnn_sdk"] and "CPU fallback disabled" in m.target_info["placement"]
    assert m.target_info["op_precisions"]["Conv"] == {"fp16": 61}
    assert "Resize" in m.ops and not any("cubic" in r["name"] for r in m.rewrites if r["name"] == "bicubic_to_bilinear")
    v = m.verification
    assert v["passed"] and v["compared"].startswith("the artifact, run by Qualcomm's HTP simulator")
    assert v["sqnr_db_min"] >= 40 and v["agreement_min"] >= 0.99
    other = v["checks"]["devices"]["s8gen3"]
    assert other["sqnr_db_min"] >= 35 and not other["failures"]
    assert v["tolerance"] == {"sqnr_min_db": 35.0, "pixel_agreement": 0.99}  # the NPU's fp16 bar (docs/npu.md)
    # PyTorch's own fp16 of the same graph, beside the HTP's figure: the hardware's cost is visible
    torch_fp16 = v["checks"]["pytorch_fp16"]
    assert 35 < torch_fp16["sqnr_db_min"] < 90 and torch_fp16["agreement_min"] >= 0.99
    lines = SPEC_QNN.check_lines(v["checks"])
    assert any(line.startswith("for scale, PyTorch's own fp16 of the same graph: SQNR median") for line in lines)
    # `edgekit verify` rebuilds the compiled deploy form and gives the same PyTorch fp16 figure
    again = runner.invoke(app, ["verify", str(art), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["verification"]["checks"]["pytorch_fp16"] == pytest.approx(torch_fp16)


def test_m0_cls_fp16_and_naive_int8(tmp_path):
    m = export(ExportOptions("m0-cls", "qnn", "fp16", output=tmp_path))
    v = m.verification
    # fp16 on the HTP: >= 40 dB on three photos; the aquarium photo is at 39.3 dB, where PyTorch's own
    # fp16 of the same deploy form is at 40.6 dB: it passes the NPU's 35 dB bar, with every top-1 kept
    assert v["sqnr_db_median"] >= 40 and v["sqnr_db_min"] >= 38 and v["agreement"] == 1.0
    assert v["passed"], v["failures"]
    assert v["checks"]["pytorch_fp16"]["sqnr_db_min"] >= v["sqnr_db_min"] - 1  # PyTorch's fp16 is no worse
    q = export(ExportOptions("m0-cls", "qnn", "int8", output=tmp_path, num_calibration=4))
    # plain QDQ int8 runs fully on the HTP and fails its bar on held-out photos, as AI Hub's did: said, not hidden
    assert any("int8" in kind for kind in q.target_info["op_precisions"]["Conv"])
    assert not q.verification["passed"] and q.verification["sqnr_db_median"] < 25


def test_the_quantiser_leaves_constant_nodes_alone(tmp_path):
    """Left to itself onnxruntime's QNN config quantises Constant nodes too: b0-seg's Resize scales and
    its attention floor, which broke the graph (w8a16 on ONNX Runtime's CPU: -0.4 dB against PyTorch's
    own deploy form, 33 dB without). edgekit's QDQ leaves them float, for every precision."""
    import onnx

    from edgekit.calibration.sources import calibration_set
    from edgekit.deploy import make_deploy_form
    from edgekit.metrics import sqnr_db
    from edgekit.reference import source_model
    from edgekit.registry import get_variant, parse_resolution
    from edgekit.targets.onnx import export_onnx, simplify_onnx
    from edgekit.targets.qnn import SPEC
    from edgekit.targets.qnn.qdq import activation_ranges, cpu_qdq, qdq

    variant = get_variant("b0-seg")
    size = parse_resolution("64x128", variant)
    model, _ = source_model(variant, size, None)
    calib = calibration_set(variant, size, None, 4).data
    form = make_deploy_form(model, size, SPEC, "w8a16", calibration=calib).model
    src = simplify_onnx(export_onnx(form, size, tmp_path / "deploy.onnx"), tmp_path / "deploy.sim.onnx")
    constants = {o for n in onnx.load(str(src)).graph.node if n.op_type == "Constant" for o in n.output}
    assert constants  # the Resize scales and the floor are Constant nodes in this graph
    ranges = activation_ranges(src, calib, tmp_path, 1.0)
    for precision in ("int8", "w8a16"):
        q = onnx.load(str(qdq(src, tmp_path / f"{precision}.onnx", calib, precision, ranges=ranges)))
        quantised = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
        assert not quantised & constants, precision
    # and the 16-bit graph computes what the float one does, on the samples its ranges came from
    out, ref = cpu_qdq(tmp_path / "w8a16.onnx", calib), cpu_qdq(src, calib)
    assert min(sqnr_db(r, o) for r, o in zip(ref, out)) > 25


def test_attention_nodes_are_found_by_module(tmp_path):
    """What w8a16 leaves out when the attention breaks the 16-bit graph: the ONNX nodes exported from
    inside the attention modules of the deploy form, found by their module path, for both families."""
    import onnx

    from edgekit.deploy import make_deploy_form
    from edgekit.deploy.attention import attention_scopes
    from edgekit.reference import source_model
    from edgekit.registry import get_variant, parse_resolution
    from edgekit.targets.onnx import export_onnx, simplify_onnx
    from edgekit.targets.qnn import SPEC
    from edgekit.targets.qnn.w8a16 import _dynamic_matmuls, _module_path, _nodes_under

    for name, res, blocks in (("b0-seg", "64x128", 4), ("m0-cls", "224", 6)):
        variant = get_variant(name)
        size = parse_resolution(res, variant)
        model, _ = source_model(variant, size, None)
        form = make_deploy_form(model, size, SPEC, "fp16").model
        scopes = attention_scopes(form)
        assert len(scopes) == blocks  # outermost only: m0's window attention holds its cascaded attention
        src = simplify_onnx(export_onnx(form, size, tmp_path / f"{name}.onnx"), tmp_path / f"{name}.sim.onnx")
        nodes = _nodes_under(src, scopes)
        graph = onnx.load(str(src)).graph
        types = {n.name: n.op_type for n in graph.node}
        # every MatMul of two activations is attention, and no node outside the blocks is taken
        assert set(_dynamic_matmuls(src)) <= set(nodes)
        assert all(any(f"{_module_path(n)}.".startswith(f"{s}.") for s in scopes) for n in nodes)
        outside = {types[n.name] for n in graph.node if n.name not in nodes}
        assert "Conv" in {types[n] for n in nodes} and "Conv" in outside  # the FFNs and the stem stay quantised
    assert _module_path("/blocks1/blocks1.0/mixer/m/attn/MatMul_5") == "blocks1.0.mixer.m.attn"
    assert _module_path("/backbone/stages.2/op_list.1/context_module/main/MatMul") == \
        "backbone.stages.2.op_list.1.context_module.main"


def _htp(culprits: dict[str, float], base: float = 10.0):
    """A stand-in for the simulator's agreement: `base` dB plus each culprit's gain when it is left out."""
    return lambda keep: base + sum(gain for node, gain in culprits.items() if node in keep)


@pytest.mark.parametrize("culprits,expected,agreed", [
    ({"n37": 30.0}, ["n37"], True),  # one node the HTP computes wrongly: found in one round
    ({"n37": 12.0, "n60": 12.0}, ["n60", "n37"], True),  # two: the later first, then the other
    ({"n99": 2.0}, ["n99"], False),  # only the whole graph in fp16 agrees: one round gains < 3 dB, stop
])
def test_the_htp_bisection_finds_the_nodes_to_leave_out(culprits, expected, agreed):
    """The node search of w8a16 (`leave_out_nodes`), on a stand-in agreement: the shortest prefix whose
    leaving out agrees, its last node left out, round after round while a round gains."""
    from edgekit.targets.qnn.w8a16 import AGREEMENT_DB, FOUND, leave_out_nodes

    order = [f"n{i}" for i in range(100)]
    measure = _htp(culprits) if agreed else (lambda keep: 40.0 if len(keep) == 100 else _htp(culprits)(keep))
    checks = []

    def check(keep):
        checks.append(dict(keep))
        return measure(keep)

    left_out, db, rounds = leave_out_nodes(order, {}, measure({}), measure, check, 8, lambda _m: None)
    assert list(left_out) == expected and set(left_out.values()) == {FOUND}
    assert rounds == len(checks) == len(expected) and (db >= AGREEMENT_DB) == agreed
    already = {"n37": "kept out before"}  # what is already left out is not searched again
    left_out, _, _ = leave_out_nodes(order, already, 10.0, _htp({"n37": 12.0, "n60": 12.0}),
                                  _htp({"n37": 12.0, "n60": 12.0}), 8, lambda _m: None)
    assert left_out == {"n37": "kept out before", "n60": FOUND}


@pytest.mark.slow  # the m0-cls export on the simulator, 2-3 min (the bisection itself: the test above)
def test_m0_cls_w8a16_leaves_out_the_node_the_htp_computes_wrongly(tmp_path):
    """w8a16 (16-bit activations, what AI Hub ships): on the simulator the HTP computes m0-cls's
    fully quantised graph unlike the QDQ graph itself (ONNX Runtime's CPU); the export finds the node
    by bisection on calibration samples and leaves it out of the quantiser, then verifies on held-out
    photos."""
    from edgekit.targets.qnn.w8a16 import AGREEMENT_DB, FOUND

    m = export(ExportOptions("m0-cls", "qnn", "w8a16", output=tmp_path))
    w = m.target_info["w8a16"]
    first, last = w["agreement"][0], w["agreement"][-1]
    assert first["left_out"] == 0 and first["db"] < AGREEMENT_DB  # every op quantised: another function
    assert w["agreed"] and last["db"] >= AGREEMENT_DB
    # the Add feeding the first stage's window partition, and nothing else (leaving the 48 MatMuls of
    # two activations out made it worse, so they stay quantised)
    assert [(k["node"], k["why"]) for k in w["left_out"]] == [("/blocks1/blocks1.0/ffn0/Add", FOUND)]
    precisions = m.target_info["op_precisions"]
    assert precisions["MatMul"] == {"uint16": 48} and precisions["Add"] == {"uint16": 80}  # all still quantised
    assert all("int8+uint16" in kind for kind in precisions["Conv"])
    v = m.verification
    # 16-bit activations hold well above naive int8 (12.0 / 7.0 dB), still short of the int8 bar on
    # random stand-ins (measured 23.1 / 15.1 dB with bias correction, 22.1 / 15.0 without; the 8-bit
    # weights cost most: 16-bit weights 51 dB)
    assert "bias_correction" in [r["name"] for r in m.rewrites]
    assert v["sqnr_db_median"] > 18 and v["sqnr_db_min"] > 10, v
    assert v["passed"] == (not v["failures"])


@pytest.mark.slow
def test_b0_seg_w8a16_leaves_the_attention_out_where_16_bits_break_it(tmp_path):
    """At 512x1024 the 16-bit QDQ graph of b0-seg is already another function on ONNX Runtime's CPU
    (the attention: -1.0 / 12.4 dB on calibration samples); the export leaves the attention blocks out
    of the quantiser (fp16 on the HTP) and verifies the rest at w8a16 (measured 28.4 / 13.7 dB on the
    verification photos, 45 s)."""
    from edgekit.targets.qnn.w8a16 import ATTENTION

    m = export(ExportOptions("b0-seg", "qnn", "w8a16", "512x1024", output=tmp_path))
    w = m.target_info["w8a16"]
    assert min(w["qdq_vs_float_db"]) < 15 and min(w["qdq_vs_float_db_attention_left_out"]) > 25
    assert {k["why"] for k in w["left_out"]} >= {ATTENTION}
    assert m.target_info["op_precisions"]["MatMul"] == {"fp16": 12} and w["agreed"]
    assert m.verification["sqnr_db_median"] > 25


def test_bad_devices_are_refused(tmp_path):
    r = runner.invoke(app, ["export", "b0-seg", "-t", "qnn", "--device", "s865", "-o", str(tmp_path)])
    assert r.exit_code == 1 and "--device 's865' is not one of: s8gen1, s8gen2, s8gen3, s8elite" in r.stderr
    r = runner.invoke(app, ["export", "b0-seg", "-t", "qnn", "--device", "s8gen1,s8gen1", "-o", str(tmp_path)])
    assert r.exit_code == 1 and "names a phone twice" in r.stderr
    r = runner.invoke(app, ["export", "b0-seg", "--device", "s8gen1", "-o", str(tmp_path)])
    assert r.exit_code == 1 and "--device applies to qnn only, not tflite" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_compiles_for_three_phones(tmp_path, name):
    """Compiled for v69, v73 and v75, every op on the HTP, and each phone's compiled model computes the
    model on the simulator. The fp16 acceptance bar (40 dB on every photo) stays the verification's,
    recorded in the manifest: b0-seg and m0-cls miss it on one photo each (README, QNN section), so this
    test holds each phone's model to 30 dB on every photo, the HTP's fp16 running the whole graph."""
    m = export(ExportOptions(name, "qnn", "fp16", every_variant_resolution(name),
                             target_options={"device": "s8gen1,s8gen2,s8gen3"}, output=tmp_path))
    assert set(m.target_info["devices"]) == {"s8gen1", "s8gen2", "s8gen3"}
    v = m.verification
    worst = {"s8gen1": v["sqnr_db_min"], **{d: r["sqnr_db_min"] for d, r in v["checks"]["devices"].items()}}
    assert set(worst) == {"s8gen1", "s8gen2", "s8gen3"} and min(worst.values()) >= 30.0, worst


# ---- profile on a phone through real adb, package for Android -------------------------------------------
SM8650 = {**SM8450_PROPS, "ro.product.model": "SM-S921B", "ro.product.name": "e1sxxx", "ro.product.device": "e1s",
          "ro.soc.model": "SM8650", "ro.board.platform": "pineapple", "ro.build.version.sdk": "34",
          "ro.build.version.release": "14"}


@pytest.fixture
def perf_test(tmp_path, monkeypatch):
    """The stand-in program and fake QNN libraries, stored with `edgekit harness add`."""
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    program = tmp_path / "onnxruntime_perf_test"
    write_launcher(program)
    libs = []
    for name in ("libQnnHtp.so", "libQnnSystem.so", "libQnnHtpV69Stub.so", "libQnnHtpV69Skel.so"):
        (tmp_path / name).write_bytes(b"\x7fELF stand-in for " + name.encode())
        libs += ["--lib", str(tmp_path / name)]
    return program, libs


def test_profile_on_the_phone_the_artifact_was_compiled_for(qnn_b0, connect, perf_test, tmp_path):
    program, libs = perf_test
    art = qnn_b0.artifact_dir
    add = runner.invoke(app, ["harness", "add", str(program), "--kind", "onnxruntime_perf_test", *libs[:4], "--json"])
    assert add.exit_code == 0, add.output
    assert sorted(json.loads(add.stdout)["libraries"]) == ["libQnnHtp.so", "libQnnSystem.so"]
    phone = connect()  # an SM8450: s8gen1
    results = tmp_path / "r.jsonl"
    args = ["profile", art, "--device", "s8gen1", "--runs", "3", "--results", str(results)]
    r = runner.invoke(app, args)  # the v69 Stub/Skel were not given yet: refused before anything is pushed
    assert r.exit_code == 1 and "needs libQnnHtpV69Stub.so, libQnnHtpV69Skel.so" in r.stderr
    assert not any("push" in c for c in phone.commands) and not results.exists()
    assert runner.invoke(app, ["harness", "add", str(program), "--kind", "onnxruntime_perf_test",
                               *libs[4:]]).exit_code == 0
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)
    assert rec["harness"] == "onnxruntime_perf_test" and rec["runs"] == 3 and rec["median_ms"] > 0
    assert rec["delegate"] == "npu" and rec["device"]["profile"] == "s8gen1" and rec["target"] == "qnn"
    ran = next(c for c in phone.commands if "onnxruntime_perf_test" in c and "-e" in c)
    assert "LD_LIBRARY_PATH=/data/local/tmp/edgekit ADSP_LIBRARY_PATH=/data/local/tmp/edgekit" in ran
    assert "-e qnn -i 'backend_path|/data/local/tmp/edgekit/libQnnHtp.so' /data/local/tmp/edgekit/model.onnx;" in ran
    assert not phone.device_path("/data/local/tmp/edgekit").exists()  # cleaned up

    # a phone the artifact was not compiled for: one line, nothing pushed
    other = connect("gen3", props=SM8650)
    r = runner.invoke(app, ["profile", art, "--device", other.serial, "--runs", "2", "--results", str(results)])
    assert r.exit_code == 1 and "needs libQnnHtpV75Stub.so" in r.stderr
    (tmp_path / "libQnnHtpV75Stub.so").write_bytes(b"x")
    (tmp_path / "libQnnHtpV75Skel.so").write_bytes(b"x")
    assert runner.invoke(app, ["harness", "add", str(program), "--kind", "onnxruntime_perf_test", "--lib",
                               str(tmp_path / "libQnnHtpV75Stub.so"), "--lib",
                               str(tmp_path / "libQnnHtpV75Skel.so")]).exit_code == 0
    only_gen1 = export(ExportOptions("b0-seg", "qnn", "fp16", "64x128", output=tmp_path / "g1"))
    r = runner.invoke(app, ["profile", only_gen1.artifact_dir, "--device", other.serial, "--results", str(results)])
    assert r.exit_code == 1 and "was compiled for s8gen1 (v69); this phone is s8gen3 (Hexagon v75)" in r.stderr
    assert not any("push" in c for c in other.commands)

    # the host has the simulator, not the NPU: no latency from it
    r = runner.invoke(app, ["profile", art, "--device", "host", "--results", str(results)])
    assert r.exit_code == 1 and "numerics, not its latency" in r.stderr


def test_a_sweep_on_an_s8gen3_phone_compiles_for_its_hexagon(connect, perf_test, tmp_path):
    """sweep's --device is the phone: every QNN cell is compiled for that phone's profile (the shared
    --device option), here an SM8650 (s8gen3, Hexagon v75 in QNN's SoC table), and then measured on it."""
    program, _ = perf_test
    libs = []
    for name in ("libQnnHtp.so", "libQnnSystem.so", "libQnnHtpV75Stub.so", "libQnnHtpV75Skel.so"):
        (tmp_path / name).write_bytes(b"\x7fELF stand-in for " + name.encode())
        libs += ["--lib", str(tmp_path / name)]
    assert runner.invoke(app, ["harness", "add", str(program), "--kind", "onnxruntime_perf_test", *libs]).exit_code == 0
    phone = connect("gen3", props=SM8650)
    out = tmp_path / "artifacts"
    args = ["sweep", "--variants", "b0-seg,m0-cls", "--targets", "qnn", "--precisions", "fp16", "--resolutions",
            "64x128", "--device", phone.serial, "--runs", "2", "--warmup", "0", "--output", str(out), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert len(rows) == 2 and all(row["latency_ms"] and row["profiled"] == "measured" for row in rows), rows
    for row in rows:
        m = read_manifest(row["artifact"])
        assert m.target_options == {"device": ["s8gen3"], "bias_correction": "on"}
        assert {d: info["htp_arch"] for d, info in m.target_info["devices"].items()} == {"s8gen3": 75}
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [rec["device"]["serial"] for rec in records] == [phone.serial] * 2
    # run again: both cells are found done (same artifacts, same phone), nothing is compiled or measured again
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and all(row["profiled"] == "from results.jsonl" and row["exported"] == "reused"
                                    for row in json.loads(r.stdout)["rows"])
    # a target option none of the chosen targets takes is refused before any work
    r = runner.invoke(app, [*args[:-1], "--layout", "nchw"])
    assert r.exit_code == 1 and "--layout applies to none of --targets qnn" in r.stderr


def test_android_bundle_loads_the_compiled_model_with_the_qnn_ep(qnn_b0, tmp_path):
    from edgekit.package import PackageOptions, package

    (record,) = package(PackageOptions((Path(qnn_b0.artifact_dir),), "android", tmp_path))
    bundle = Path(record["bundle"])
    assert (bundle / "model.qnn" / "s8gen1" / "model_qnn.bin").is_file()
    # only what an app loads: each phone's EPContext model and context binary, not the source graph
    shipped = sorted(str(p.relative_to(bundle / "model.qnn")) for p in (bundle / "model.qnn").rglob("*") if p.is_file())
    assert shipped == ["s8gen1/model.onnx", "s8gen1/model_qnn.bin", "s8gen3/model.onnx", "s8gen3/model_qnn.bin"]
    with zipfile.ZipFile(record["zip"]) as z:
        assert not [n for n in z.namelist() if n.endswith("source.onnx")]
    code = (bundle / "EdgekitModel.kt").read_text()
    assert "Copy model.qnn/ (the compiled model of each phone it was compiled for: s8gen1, s8gen3)" in code
    assert 'options.addQnn(mapOf("backend_path" to "libQnnHtp.so"))' in code
    assert 'private val DEVICE = "s8gen1"' in code and "onnxruntime-android-qnn" in code
    assert "QNN SDK " + qnn_b0.target_info["qnn_sdk"] in code
    spec = json.loads((bundle / "model.json").read_text())
    assert spec["output"]["shape"] == [1, 19, 16, 32] and spec["input"]["shape"] == [1, 3, 128, 256]
    assert sorted(spec["model_files"]) == shipped
