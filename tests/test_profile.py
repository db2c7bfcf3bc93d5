"""Profiling: the benchmark_model parser on verbatim output, the host harness, and phones through the
real `adb` client talking to a virtual device (tests/virtual_adbd.py) over loopback TCP."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import error_line, one_line_error
from edgekit.android_harness import benchmark_output
from edgekit.android_harness.host_benchmark import write_launcher
from edgekit.artifacts import sha256
from edgekit.cli import app
from edgekit.export import ExportOptions, export
from edgekit.profile import append_result, read_results

runner = CliRunner()

# ---- verbatim benchmark_model output -----------------------------------------------------------------
TFLITE_2X = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [1000]
INFO: Graph: [./models/tiny_float32.tflite]
INFO: Loaded model ./models/tiny_float32.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
VERBOSE: Replacing 2136 out of 2168 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 65 partitions for subgraph 0.
INFO: The input model file size (MB): 24.6229
INFO: Initialized session in 119.515ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=9 first=87112 curr=51629 min=51629 max=87112 avg=58147.4 std=11478 p5=51629 median=51962 p95=87112

INFO: Running benchmark for at least 1000 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 median=51891 p95=68628

INFO: Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 63743.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=55.4961 overall=55.4961
INFO: Overall peak memory footprint (MB) via periodic monitoring: 93.2383
"""

# TF 1.x era: no prefixes, stats without percentiles, and the older summary line
TFLITE_1X = """\
Initialized session in 0.896ms
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=215 first=12231 curr=2106 min=2065 max=12231 avg=2331.42 std=746

Running benchmark for at least 100 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=459 first=2143 curr=2101 min=2056 max=2656 avg=2177.1 std=124

Average inference timings in us: Warmup: 2331.42, Init: 896, no stats: 2177.1
"""

# the benchmark app's results read from logcat, with the per-op table of --enable_op_profiling
LOGCAT = """\
11-21 10:00:00.101  4242  4242 I tflite  : Initialized session in 38.467ms.
11-21 10:00:02.345  4242  4242 I tflite  : count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929
11-21 10:00:02.346  4242  4242 I tflite  : ============================== Summary by node type ==============================
11-21 10:00:02.346  4242  4242 I tflite  : \t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
11-21 10:00:02.346  4242  4242 I tflite  : \t                 CONV_2D\t       15\t     1.406\t    89.270%\t    89.270%\t     0.000\t        0
11-21 10:00:02.346  4242  4242 I tflite  : \t       DEPTHWISE_CONV_2D\t       13\t     0.169\t    10.730%\t   100.000%\t     0.000\t        0
11-21 10:00:02.346  4242  4242 I tflite  : \t                 SOFTMAX\t        1\t     0.000\t     0.000%\t   100.000%\t     0.000\t        0
11-21 10:00:02.347  4242  4242 I tflite  :
11-21 10:00:02.347  4242  4242 I tflite  : Timings (microseconds): count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929
11-21 10:00:02.348  4242  4242 I tflite  : Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9
"""

# e-notation (large models print microseconds in scientific form) and the older memory line
E_NOTATION = """\
INFO: count=3 first=1.04857e+07 curr=1.00416e+07 min=1.00416e+07 max=1.04857e+07 avg=1.02e+07 std=181234
INFO: count=10 first=1.00213e+07 curr=9.98e+06 min=9.9e+06 max=1.0102e+07 avg=1.0e+07 std=60123.5
INFO: Inference timings in us: Init: 2.1e+06, First inference: 1.04857e+07, Warmup (avg): 1.02e+07, Inference (avg): 1e+07
INFO: Peak memory footprint (MB): init=310.2 overall=912.5
"""

# the newer millisecond summary (LiteRT tools), as the issue describes it
MS_FORM = """\
INFO: Init: 25.4 ms
INFO: First inference: 61.2 ms
INFO: Inference (avg): 43.21 ms
"""


def test_parse_tflite_2x_with_percentiles_and_coverage():
    s = benchmark_output.parse(TFLITE_2X).summary()
    assert s["runs"] == 1000 and s["median_ms"] == pytest.approx(51.891) and s["mean_ms"] == pytest.approx(63.7432)
    assert s["std_ms"] == pytest.approx(60.716) and s["p95_ms"] == pytest.approx(68.628) and s["p90_ms"] is None
    assert s["init_ms"] == pytest.approx(119.515) and s["first_ms"] == pytest.approx(87.112)
    assert s["peak_memory_mb"] == pytest.approx(93.2383)
    assert s["delegate_nodes"] == {"name": "TfLiteXNNPackDelegate", "replaced": 2136, "total": 2168, "outside": 32,
                                   "partitions": 65, "outside_ops": None}


def test_parse_tflite_1x():
    p = benchmark_output.parse(TFLITE_1X)
    s = p.summary()
    assert p.complete and s["runs"] == 459 and s["mean_ms"] == pytest.approx(2.1771) and s["median_ms"] is None
    assert s["init_ms"] == pytest.approx(0.896) and s["delegate_nodes"]["total"] is None


def test_parse_logcat_and_op_profile():
    p = benchmark_output.parse(LOGCAT)
    assert p.inference_avg_ms == pytest.approx(79.7609) and p.init_ms == pytest.approx(38.467)
    assert [r["node_type"] for r in p.op_profile] == ["CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX"]
    assert p.op_profile[0] == {"node_type": "CONV_2D", "count": 15, "avg_ms": 1.406, "avg_pct": 89.27, "cdf_pct": 89.27}


def test_parse_e_notation_and_old_memory_line():
    s = benchmark_output.parse(E_NOTATION).summary()
    assert s["mean_ms"] == pytest.approx(10000.0) and s["min_ms"] == pytest.approx(9900.0)
    assert s["init_ms"] == pytest.approx(2100.0) and s["peak_memory_mb"] == pytest.approx(912.5)


def test_parse_millisecond_form():
    p = benchmark_output.parse(MS_FORM)
    assert p.complete and p.inference_avg_ms == pytest.approx(43.21) and p.init_ms == pytest.approx(25.4)


def test_parse_crash_is_incomplete():
    crashed = TFLITE_2X.split("INFO: count=1000")[0] + "ERROR: Node number 57 (BATCH_MATMUL) failed to prepare.\n"
    p = benchmark_output.parse(crashed)
    assert not p.complete and p.errors == ["Node number 57 (BATCH_MATMUL) failed to prepare."]


def test_results_append_is_whole_lines(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"a": 1}')  # a file some other tool left without a final newline
    append_result(path, {"b": 2})
    append_result(path, {"c": 3})
    assert read_results(path) == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert not list(tmp_path.glob(".*tmp"))


# ---- the host harness and real adb --------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifact(shared_artifact, tmp_path_factory):
    """A copy of the session's b0-seg TFLite export, in a folder of its own (results.jsonl lands beside it)."""
    src = Path(shared_artifact("b0-seg", "tflite", "fp32", "64x128").artifact_dir)
    out = tmp_path_factory.mktemp("artifacts")
    return out, str(shutil.copytree(src, out / src.name))


@pytest.fixture
def harness(tmp_path):
    path = tmp_path / "benchmark_model"
    write_launcher(path)
    return path


def _profile(args, results):
    return runner.invoke(app, ["profile", *args, "--runs", "3", "--warmup", "1", "--results", str(results), "--json"])


def test_profile_on_host(artifact, tmp_path):
    _, art = artifact
    results = tmp_path / "results.jsonl"
    r = runner.invoke(app, ["profile", art, "--device", "host", "--runs", "3", "--warmup", "1",
                            "--results", str(results)])
    assert r.exit_code == 0, r.output
    assert "b0-seg-cityscapes" in r.stdout and "median ms" in r.stdout
    (rec,) = read_results(results)
    assert rec["device"]["profile"] == "host" and rec["runs"] == 3 and rec["median_ms"] > 0
    nodes = rec["delegate_nodes"]  # measured, not assumed: b0-seg's upsample leaves 6 nodes outside XNNPACK
    assert 0 < nodes["replaced"] <= nodes["total"] and nodes["outside"] == nodes["total"] - nodes["replaced"]
    assert nodes["partitions"] >= 1 + (nodes["outside"] > 0)
    assert sum((nodes["outside_ops"] or {}).values()) == nodes["outside"]
    assert rec["vs_paper"] is None  # no published figure for this machine


def test_profile_defaults_to_every_tflite_artifact(artifact, tmp_path, monkeypatch):
    _, art = artifact
    root = tmp_path / "edgekit-artifacts"
    shutil.copytree(art, root / "b0")
    coreml = root / "b0-coreml"  # a CoreML artifact is skipped, not an error
    coreml.mkdir()
    manifest = json.loads((root / "b0" / "edgekit.json").read_text())
    (coreml / "edgekit.json").write_text(json.dumps({**manifest, "target": "coreml"}))
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["profile", "--runs", "2", "--warmup", "0", "--json"])
    assert r.exit_code == 0, r.output
    measured, skipped = json.loads(r.stdout)  # the CoreML one is listed with why, not measured
    assert measured["artifact"] == str(Path("edgekit-artifacts") / "b0") and "median_ms" in measured
    assert skipped["artifact"] == str(Path("edgekit-artifacts") / "b0-coreml") and not skipped["named"]
    assert len(read_results(root / "results.jsonl")) == 1


def test_devices_and_profile_through_real_adb(artifact, connect, harness, tmp_path):
    phone = connect()
    r = runner.invoke(app, ["devices", "--json"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert row == {"serial": phone.serial, "state": "device", "model": "SM-S901B", "soc": "SM8450",
                   "platform": "taro", "profile": "s8gen1"}
    _, art = artifact
    results = tmp_path / "results.jsonl"
    r = _profile([art, "--device", "s8gen1", "--harness", str(harness)], results)
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)
    assert rec["device"] == {"profile": "s8gen1", "serial": phone.serial, "model": "SM-S901B", "soc": "SM8450",
                             "core_mask": "f0",
                             "adb_server": f"tcp:localhost:{os.environ['ANDROID_ADB_SERVER_PORT']}"}
    assert rec["threads"] == 4 and rec["runs"] == 3 and rec["median_ms"] > 0 and rec["harness_sha256"]
    assert read_results(results) == [rec]
    assert (phone.sandbox / "taskset.log").read_text().split() == ["f0"]  # pinned to the big cores
    assert not phone.device_path("/data/local/tmp/edgekit").exists()  # cleaned up
    assert any("benchmark_model" in c and "--num_threads=4" in c for c in phone.commands)


def test_keep_and_quoted_paths(artifact, connect, harness, tmp_path):
    phone = connect()
    out, art = artifact
    odd = tmp_path / """b0 "quoted" it's"""
    shutil.copytree(art, odd)
    r = _profile([str(odd), "--device", phone.serial, "--harness", str(harness), "--keep"], tmp_path / "r.jsonl")
    assert r.exit_code == 0, r.output
    kept = sorted(p.name for p in phone.device_path("/data/local/tmp/edgekit").iterdir())
    assert kept == ["""b0 "quoted" it's-model.tflite""", "benchmark_model"]


def test_unauthorized_and_offline(connect, harness, artifact, tmp_path):
    locked = connect("locked", want="unauthorized", mode="unauthorized")
    results = tmp_path / "results.jsonl"
    r = _profile([artifact[1], "--device", locked.serial, "--harness", str(harness)], results)
    assert r.exit_code == 1 and "unauthorized" in r.stderr and "Allow USB debugging" in r.stderr
    r = _profile([artifact[1], "--device", "s8gen1", "--harness", str(harness)], results)
    assert r.exit_code == 1 and "unauthorized" in r.stderr
    asleep = connect("asleep", want="offline", mode="offline")
    r = runner.invoke(app, ["devices", "--json"])
    states = {d["serial"]: d["state"] for d in json.loads(r.stdout)}
    assert states == {locked.serial: "unauthorized", asleep.serial: "offline"}
    r = _profile([artifact[1], "--device", asleep.serial, "--harness", str(harness)], results)
    assert r.exit_code == 1 and "offline" in r.stderr
    assert not results.exists()


def test_a_serial_that_is_not_connected_is_called_so(connect, harness, artifact, tmp_path):
    """A phone's serial that adb does not list is not called an unknown profile."""
    from eval_data import cityscapes

    connect("present")
    cityscapes(tmp_path / "cs")
    for args in (["profile", artifact[1]], ["verify", artifact[1]], ["eval", artifact[1], "-d", str(tmp_path / "cs")]):
        r = runner.invoke(app, [*args, "--device", "R5CT12345"])
        assert r.exit_code == 1, r.output
        err = error_line(r.stderr)
        assert "R5CT12345: no phone with this serial is connected" in err and "\n" not in err, (args, err)


def test_disconnect_mid_run(connect, harness, artifact, tmp_path):
    phone = connect(drop_on="--num_runs")
    results = tmp_path / "results.jsonl"
    r = _profile([artifact[1], "--device", "s8gen1", "--harness", str(harness)], results)
    assert r.exit_code == 1 and "lost device" in error_line(r.stderr)
    assert not results.exists() and phone.commands


def test_harness_crash(connect, artifact, tmp_path):
    connect()
    crashing = tmp_path / "crashing_benchmark_model"
    crashing.write_text("#!/bin/sh\necho 'INFO: STARTING!'\necho 'ERROR: Failed to allocate tensors!'\nexit 139\n")
    results = tmp_path / "results.jsonl"
    r = _profile([artifact[1], "--device", "s8gen1", "--harness", str(crashing)], results)
    assert r.exit_code == 1 and "exit 139" in r.stderr and "Failed to allocate tensors" in r.stderr
    assert not results.exists()


def test_two_phones_one_profile(connect, harness, artifact, tmp_path, monkeypatch):
    """A profile names every connected phone of it: both are measured, each under its own serial."""
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    a, b = connect("a"), connect("b")
    r = _profile([artifact[1], "--device", "s8gen1", "--harness", str(harness)], tmp_path / "r.jsonl")
    assert r.exit_code == 0, r.output
    assert sorted(rec["device"]["serial"] for rec in json.loads(r.stdout)) == sorted([a.serial, b.serial])
    assert len(read_results(tmp_path / "r.jsonl")) == 2


def test_missing_harness_and_adb(artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    r = _profile([artifact[1], "--device", "s8gen1"], tmp_path / "r.jsonl")
    assert r.exit_code == 1
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb anywhere
    r = _profile([artifact[1], "--device", "s8gen1"], tmp_path / "r.jsonl")
    assert r.exit_code == 1 and "adb not found" in r.stderr and "apt-get install adb" in r.stderr


def test_harness_add(tmp_path, harness, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    r = runner.invoke(app, ["harness", "add", str(harness), "--json"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout)
    assert (record["kind"], record["file"]) == ("benchmark_model", "script") and len(record["sha256"]) == 64
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    r = runner.invoke(app, ["harness", "add", str(bogus)])
    assert r.exit_code == 1 and "not a benchmark_model" in r.stderr


def test_sweep_on_a_phone_draws_the_papers_points(artifact, connect, harness, tmp_path, monkeypatch):
    """`edgekit sweep --device s8gen1` through real adb: the artifact on disk is reused (not
    re-exported), measured on the phone, and the paper's s8gen1 points join ours in the picture."""
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    assert runner.invoke(app, ["harness", "add", str(harness)]).exit_code == 0
    phone = connect()
    out = tmp_path / "artifacts"
    shutil.copytree(artifact[1], out / Path(artifact[1]).name)
    args = ["sweep", "--variants", "b0-seg", "--resolutions", "64x128", "--device", "s8gen1", "--runs", "2",
            "--warmup", "0", "--output", str(out), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    (row,) = result["rows"]
    assert (row["status"], row["exported"], row["profiled"]) == ("ok", "reused", "measured")
    (rec,) = read_results(out / "results.jsonl")
    assert rec["device"]["serial"] == phone.serial and rec["device"]["profile"] == "s8gen1"
    assert row["latency_ms"] == rec["median_ms"] > 0
    assert result["device_profile"] == "s8gen1"
    assert [(p["variant"], p["resolution"], p["ms"]) for p in result["paper_points"]] == [
        ("b0-seg-cityscapes", [960, 1920], 200)]
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    # the same sweep by serial finds the measurement already made on that phone
    r = runner.invoke(app, [*args[:6], phone.serial, *args[7:]])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["rows"][0]["profiled"] == "from results.jsonl"
    assert len(read_results(out / "results.jsonl")) == 1


def test_an_artifact_that_is_not_profiled_does_not_stop_the_others(b0_fp32, onnx_b0, tmp_path):
    _, tflite = b0_fp32
    coreml = export(ExportOptions("b0-cls", "coreml", "fp32", "64", output=tmp_path / "c"))  # an iPhone's
    results = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["profile", coreml.artifact_dir, tflite.artifact_dir, onnx_b0.artifact_dir, "--runs", "2",
                            "--warmup", "0", "--results", str(results), "--json"])
    one_line_error(r, "1 of the artifacts named was not profiled")
    assert "the coreml target is not profiled" in r.stderr and "a coreml" not in r.stderr
    tflite_rec, onnx_rec, skipped = json.loads(r.stdout)
    assert tflite_rec["target"] == "tflite" and tflite_rec["median_ms"] > 0 and skipped["target"] == "coreml"
    # ONNX artifacts are profiled too: onnxruntime_perf_test's host stand-in, the CPU execution provider
    assert onnx_rec["harness"] == "onnxruntime_perf_test" and onnx_rec["delegate"] == "cpu" and onnx_rec["median_ms"]
    assert [json.loads(line)["target"] for line in results.read_text().splitlines()] == ["tflite", "onnx"]
    # named alone: one line, nothing recorded
    r = runner.invoke(app, ["profile", coreml.artifact_dir, "--results", str(tmp_path / "other.jsonl")])
    one_line_error(r, "the coreml target is not profiled")
    assert not (tmp_path / "other.jsonl").exists()


def test_profile_over_a_folder_measures_what_runs_here_and_says_why_it_skips_the_rest(b0_fp32, tmp_path):
    """`profile --device host` over a folder holding a QNN and a CoreML artifact beside a TFLite one:
    the TFLite one is measured, each other one skipped with a line saying why, and the exit is 0 (none
    was named). The QNN and CoreML artifacts are the TFLite one's files under their manifests' targets:
    what is skipped is decided by the manifest alone, before any model is read."""
    _, tflite = b0_fp32
    folder = tmp_path / "arts"
    shutil.copytree(tflite.artifact_dir, folder / "tfl")
    for target in ("qnn", "coreml"):
        shutil.copytree(tflite.artifact_dir, folder / target)
        data = json.loads((folder / target / "edgekit.json").read_text())
        (folder / target / "edgekit.json").write_text(json.dumps({**data, "target": target}))
    r = runner.invoke(app, ["profile", str(folder), "--device", "host", "--runs", "2", "--warmup", "0"])
    assert r.exit_code == 0, r.output
    assert "qnn: the HTP simulator gives the NPU's numerics, not its latency" in r.stdout
    assert "coreml: the coreml target is not profiled: CoreML runs on an iPhone" in r.stdout
    records = json.loads(runner.invoke(app, ["profile", str(folder), "--runs", "2", "--warmup", "0",
                                             "--json"]).stdout)
    assert [x.get("skipped", "").split(":")[0] or x["target"] for x in records] == ["tflite", "coreml", "qnn"]


def test_noisy_runs_are_called_noisy(monkeypatch):
    import io

    from rich.console import Console

    import edgekit.report as report
    from edgekit.profile import _noisy

    assert _noisy({"mean_ms": 240.0, "std_ms": 103.0}) and not _noisy({"mean_ms": 240.0, "std_ms": 4.0})
    assert not _noisy({"mean_ms": None, "std_ms": None})
    record = {"variant": "b0-seg", "resolution": [512, 1024], "target": "tflite", "precision": "fp32",
              "device": {"serial": None, "profile": "host"}, "delegate": "cpu", "threads": 2, "init_ms": 5.0,
              "median_ms": 240.0, "mean_ms": 240.0, "std_ms": 103.0, "p90_ms": 400.0, "peak_memory_mb": 80.0,
              "harness": "benchmark_model", "delegate_nodes": {"replaced": 1, "total": 1, "partitions": 1},
              "paper": None, "vs_paper": None, "random_weights": True, "integrity": "model file as exported",
              "results_file": None, "artifact": "x/b0", "noisy": True}
    buffer = io.StringIO()
    monkeypatch.setattr(report, "console", Console(file=buffer, width=200))
    report.profile_table([record])
    assert "b0: noisy runs (240.00 +- 103.00 ms" in buffer.getvalue()


def test_profile_refuses_a_changed_model_unless_forced(tflite_b0, tmp_path):
    copy = tmp_path / tflite_b0.name
    shutil.copytree(tflite_b0, copy)
    data = bytearray((copy / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    (copy / "model.tflite").write_bytes(bytes(data))
    results = tmp_path / "r.jsonl"
    args = ["profile", str(copy), "--device", "host", "--runs", "2", "--warmup", "0", "--results", str(results)]
    one_line_error(runner.invoke(app, args), "does not match the sha256 in its manifest")
    assert not results.exists()
    r = runner.invoke(app, [*args, "--force"])
    assert r.exit_code == 0, r.output
    (record,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert record["sha256"] == sha256(copy / "model.tflite") != record["manifest_sha256"]
    assert record["manifest_sha256"] == json.loads((copy / "edgekit.json").read_text())["sha256"]
    assert "changed since export" in record["integrity"] and "measured anyway" in r.stdout


def test_results_go_next_to_the_artifacts_and_failures_keep_the_measurement(tflite_b0, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "arts"
    shutil.copytree(tflite_b0, folder / tflite_b0.name)
    monkeypatch.chdir(elsewhere)
    r = runner.invoke(app, ["profile", str(folder / tflite_b0.name), "--runs", "2", "--warmup", "0"])
    assert r.exit_code == 0, r.output
    assert (folder / "results.jsonl").is_file() and list(elsewhere.iterdir()) == []
    assert f"results appended to {folder / 'results.jsonl'}" in r.stdout.replace("\n", "")

    # a results path that is a folder: refused before anything runs
    one_line_error(runner.invoke(app, ["profile", str(folder), "--results", str(elsewhere)]), "is a folder")

    # the write fails after the measurement: the measurement is printed, the reason said, exit 1
    from edgekit import profile as profiler

    def full_disk(path, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(profiler, "append_result", full_disk)
    r = runner.invoke(app, ["profile", str(folder), "--runs", "2", "--warmup", "0", "--json"])
    assert r.exit_code == 1 and "No space left on device" in r.stderr
    (record,) = json.loads(r.stdout)
    assert record["median_ms"] > 0 and record["results_file"] is None and "only in this output" in record["results_error"]


def test_profile_takes_a_folder_of_artifacts(tflite_b0, tmp_path):
    folder = tmp_path / "arts"
    shutil.copytree(tflite_b0, folder / tflite_b0.name)
    r = runner.invoke(app, ["profile", str(folder), "--runs", "2", "--warmup", "0", "--json"])
    assert r.exit_code == 0, r.output
    assert [rec["artifact"] for rec in json.loads(r.stdout)] == [str(folder / tflite_b0.name)]
    one_line_error(runner.invoke(app, ["profile", str(tmp_path / "nope")]), "not found")
    (tmp_path / "empty").mkdir()
    one_line_error(runner.invoke(app, ["profile", str(tmp_path / "empty")]), "holds none")


def test_threads_must_be_positive(tflite_b0):
    for value in ("0", "-3"):
        one_line_error(runner.invoke(app, ["profile", str(tflite_b0), "--threads", value]), "--threads must be at least 1")
        one_line_error(runner.invoke(app, ["sweep", "--variants", "b0-seg", "--threads", value]),
                        "--threads must be at least 1")
