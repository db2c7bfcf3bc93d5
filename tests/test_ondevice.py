"""On the phone itself: `verify --device` reads back what the phone computed, several phones run at
once behind one adb server (ADB_SERVER_SOCKET or --adb-server), a phone is held by one run at a time.

Real adb server and client throughout; the phones are virtual adb devices (tests/virtual_adbd.py)
whose runners really run the model with the runners' real flags (the host stand-ins), one of them
told to perturb its outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import error_line, one_line_error
from edgekit.android_harness.host_benchmark import split_value_file
from edgekit.android_harness.host_benchmark import write_launcher as write_benchmark_launcher
from edgekit.cli import app
from edgekit.manifest import read_manifest
from edgekit.ondevice import decode_output, encode_input
from edgekit.profile import read_results

runner = CliRunner()
SM8650_PROPS = {"ro.product.manufacturer": "samsung", "ro.product.model": "SM-S921B", "ro.product.name": "e1sxxx",
                "ro.product.device": "e1s", "ro.soc.manufacturer": "QTI", "ro.soc.model": "SM8650",
                "ro.board.platform": "pineapple", "ro.hardware": "qcom", "ro.build.version.sdk": "34",
                "ro.product.cpu.abi": "arm64-v8a"}


@pytest.fixture(scope="module")
def artifact(shared_artifact, tmp_path_factory):
    """A copy of the session's b0-seg TFLite export: these tests write into its manifest and beside it."""
    import shutil

    src = Path(shared_artifact("b0-seg", "tflite", "fp32", "64x128").artifact_dir)
    return shutil.copytree(src, tmp_path_factory.mktemp("artifacts") / src.name)


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))  # the phone locks live here


# ---- the tensors as the runners read and write them -------------------------------------------------------
def test_input_and_output_bytes_follow_the_manifest():
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 6)).astype(np.float32)
    nhwc = {"shape": [1, 4, 6, 3], "layout": "NHWC", "dtype": "float32", "quantization": None}
    assert np.frombuffer(encode_input(nhwc, x), np.float32).reshape(1, 4, 6, 3).transpose(0, 3, 1, 2).tolist() \
        == x.tolist()
    q = {"scale": 0.05, "zero_point": -3}
    raw = encode_input({**nhwc, "dtype": "int8", "quantization": q}, x)
    assert len(raw) == x.size and np.abs(np.frombuffer(raw, np.int8) - np.clip(np.round(
        x.transpose(0, 2, 3, 1) / 0.05 - 3), -128, 127).ravel()).max() == 0
    with pytest.raises(Exception, match="takes"):
        encode_input({**nhwc, "shape": [1, 8, 6, 3]}, x)
    y = np.random.default_rng(1).standard_normal((1, 5, 2, 3)).astype(np.float32)  # NHWC out, 3 classes
    back = decode_output({"shape": [1, 5, 2, 3], "layout": "NHWC", "dtype": "float32", "quantization": None},
                         y.tobytes() + b"\0" * 8, (1, 3, 5, 2))  # benchmark_model appends any further outputs
    assert back.shape == (1, 3, 5, 2) and np.array_equal(back, y.transpose(0, 3, 1, 2))
    with pytest.raises(Exception, match="wrote 4 bytes"):
        decode_output({"shape": None, "layout": "NCHW", "dtype": "float32"}, b"\0" * 4, (1, 3, 5, 2))


def test_value_file_names_escape_colons_as_benchmark_model_does():
    assert split_value_file("serving_default_input::0:/data/x.raw") == ("serving_default_input:0", "/data/x.raw")
    assert split_value_file("in:a::b") == ("in", "a:b")
    for bad in ("noseparator", "a:b:c"):
        with pytest.raises(ValueError):
            split_value_file(bad)


def test_the_host_runner_dumps_what_it_ran(artifact, tmp_path):
    """benchmark_model's stand-in reads the value file and writes the raw output (the runner a
    virtual phone runs), equal to ai-edge-litert's own output on the same tensor."""
    from edgekit.targets.tflite.runner import TFLiteRunner

    m = read_manifest(artifact)
    x = np.random.default_rng(0).random((1, 3, 64, 128), dtype=np.float32)
    (tmp_path / "in.raw").write_bytes(encode_input(m.io["input"], x))
    name = m.io["input"]["name"].replace(":", "::")
    args = [sys.executable, "-m", "edgekit.android_harness.host_benchmark", f"--graph={m.model_path}",
            "--num_runs=1", "--warmup_runs=0", f"--input_layer={m.io['input']['name']}",
            "--input_layer_shape=" + ",".join(map(str, m.io["input"]["shape"])),
            f"--input_layer_value_files={name}:{tmp_path / 'in.raw'}", f"--output_filepath={tmp_path / 'out.raw'}"]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    want = TFLiteRunner(m.model_path).run(x, (1, 19, 8, 16))
    got = decode_output(m.io["output"], (tmp_path / "out.raw").read_bytes(), want.shape)
    assert np.array_equal(got, want)
    other = [a.replace(f"--input_layer={m.io['input']['name']}", "--input_layer=other") for a in args]
    wrong = subprocess.run(other, capture_output=True, text=True)
    assert wrong.returncode == 1 and "Cannot find the corresponding input_layer name" in wrong.stdout


# ---- verify --device ---------------------------------------------------------------------------------------
def test_verify_on_a_phone_reads_back_the_phones_own_numbers(artifact, connect, tmp_path, own_cache):
    """A phone whose runner adds noise 30 dB below the signal: `verify --device` reports ~30 dB and
    FAIL (exit 3); host verification of the same artifact passes; a faithful phone passes at the
    host's figure. Each phone's record lands in the manifest beside the host's, which is unchanged."""
    import noisy_runner

    host = runner.invoke(app, ["verify", str(artifact), "--json"])
    assert host.exit_code == 0, host.output
    host_sqnr = json.loads(host.stdout)["verification"]["sqnr_db_min"]
    before = read_manifest(artifact).verification

    noisy = connect("noisy")
    r = runner.invoke(app, ["verify", str(artifact), "--device", noisy.serial, "--json",
                            "--harness", str(noisy_runner.write(tmp_path / "benchmark_model", 30.0))])
    assert r.exit_code == 3, r.output
    (rec,) = json.loads(r.stdout)["devices"]
    v = rec["verification"]
    assert 28.5 < v["sqnr_db_median"] < 31.5 and not v["passed"], v
    assert "verification failed on " + noisy.serial in r.stderr
    assert rec["device"]["serial"] == noisy.serial and rec["device"]["soc"] == "SM8450"
    assert rec["harness"] == "benchmark_model" and rec["delegate"] == "cpu" and rec["threads"] == 4
    runs = [c for c in noisy.commands if "--output_filepath=" in c]
    assert len(runs) == len(v["images"]) and all("taskset f0" in c and "--input_layer_value_files=" in c
                                                  for c in runs)

    good = connect("good")
    launcher = tmp_path / "runner-good" / "benchmark_model"
    launcher.parent.mkdir()
    write_benchmark_launcher(launcher)
    r = runner.invoke(app, ["verify", str(artifact), "--device", good.serial, "--harness", str(launcher)])
    assert r.exit_code == 0, r.output
    assert good.serial in r.stdout and "host verification (in the manifest, unchanged): PASS" in r.stdout
    m = read_manifest(artifact)
    assert m.verification == before
    by_serial = {d["device"]["serial"]: d for d in m.device_verifications}
    assert set(by_serial) == {noisy.serial, good.serial}
    assert not by_serial[noisy.serial]["verification"]["passed"] and by_serial[good.serial]["verification"]["passed"]
    # the CPU path of the stand-in is the host's own: the phone's figure is the host's
    assert by_serial[good.serial]["verification"]["sqnr_db_min"] == pytest.approx(host_sqnr, abs=0.1)
    assert not list(good.device_path("/data/local/tmp").iterdir())  # cleaned up


@pytest.mark.slow  # an ExecuTorch export of its own worker's (about 100 s here)
def test_verify_an_executorch_artifact_on_a_phone(shared_artifact, connect, tmp_path, own_cache):
    """executor_runner's own input/output flags (--inputs, --output_file BASE -> BASE-0.bin)."""
    import shutil

    from edgekit.android_harness.host_executor_runner import write_launcher as write_runner_launcher

    src = Path(shared_artifact("b0-seg", "executorch", "fp32", "64x128").artifact_dir)
    art = shutil.copytree(src, tmp_path / src.name)
    phone = connect()
    launcher = tmp_path / "executor_runner"
    write_runner_launcher(launcher)
    r = runner.invoke(app, ["verify", str(art), "--device", phone.serial, "--harness", str(launcher), "--json"])
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)["devices"]
    assert rec["harness"] == "executor_runner" and rec["verification"]["passed"]
    assert rec["verification"]["sqnr_db_min"] == pytest.approx(read_manifest(art).verification["sqnr_db_min"],
                                                                abs=0.1)
    assert all("--output_file=" in c for c in phone.commands if "--inputs=" in c)


def test_verify_on_a_phone_says_in_one_line_what_cannot_run_there(shared_artifact, connect, own_cache):
    onnx = shared_artifact("m0-cls", "onnx", "fp32").artifact_dir
    phone = connect()
    r = runner.invoke(app, ["verify", str(onnx), "--device", phone.serial])
    assert r.exit_code == 1 and "onnxruntime_perf_test writes no outputs" in error_line(r.stderr)
    r = runner.invoke(app, ["verify", str(onnx), "--delegate", "gpu"])
    assert r.exit_code == 1 and "--delegate is for a phone" in r.stderr


# ---- several phones, a lab's adb server, locks ------------------------------------------------------------
def test_profile_on_every_phone_at_once_behind_a_remote_adb_server(artifact, connect, tmp_path, monkeypatch,
                                                                    own_cache):
    """Three phones behind the server ADB_SERVER_SOCKET names: two of one profile and one that drops
    during the push. `--device all` runs them at the same time, records each good phone's own figure,
    and exits non-zero for the third."""
    import os

    port = os.environ["ANDROID_ADB_SERVER_PORT"]
    a, b = connect("a"), connect("b")
    dropper = connect("c", props=SM8650_PROPS, drop_on_push="model.tflite")
    monkeypatch.delenv("ANDROID_ADB_SERVER_PORT")
    monkeypatch.setenv("ADB_SERVER_SOCKET", f"tcp:127.0.0.1:{port}")
    launcher = tmp_path / "benchmark_model"
    write_benchmark_launcher(launcher)
    results = tmp_path / "results.jsonl"
    r = runner.invoke(app, ["profile", str(artifact), "--device", "all", "--harness", str(launcher), "--runs", "20",
                            "--warmup", "1", "--results", str(results), "--json"])
    assert r.exit_code == 1, r.output
    records = json.loads(r.stdout)
    ok = [x for x in records if "failed" not in x]
    (bad,) = [x for x in records if "failed" in x]
    assert {x["device"]["serial"] for x in ok} == {a.serial, b.serial}
    assert bad["device"]["serial"] == dropper.serial and bad["device"]["profile"] == "s8gen3"
    assert f"phone failed: {dropper.serial}" in error_line(r.stderr)
    assert all(x["device"]["adb_server"] == f"tcp:127.0.0.1:{port}" and x["median_ms"] > 0 for x in ok)
    assert len({x["median_ms"] for x in ok}) == 2  # each phone's own measurement
    assert sorted(x["device"]["serial"] for x in read_results(results)) == sorted([a.serial, b.serial])
    # the two runs overlapped in time (the phones' own clocks of the benchmark commands)
    spans = [next((s, e) for s, e, c in phone.log if "--num_runs=20" in c) for phone in (a, b)]
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    assert not any("--num_runs" in c for c in dropper.commands)  # it never got to run


def test_adb_server_option_and_a_phone_held_by_another_run(artifact, connect, tmp_path, monkeypatch, own_cache):
    import os

    port = os.environ["ANDROID_ADB_SERVER_PORT"]
    phone = connect()
    monkeypatch.delenv("ANDROID_ADB_SERVER_PORT")  # only --adb-server names the server now
    r = runner.invoke(app, ["devices", "--adb-server", f"127.0.0.1:{port}", "--json"])
    assert r.exit_code == 0, r.output
    assert [d["serial"] for d in json.loads(r.stdout)] == [phone.serial]
    r = runner.invoke(app, ["devices", "--adb-server", "nocolon"])
    assert r.exit_code == 1 and "give HOST:PORT" in r.stderr
    # another edgekit run holds the phone: this one fails at once, in one line, and leaves it alone
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from edgekit.locks import phone_lock
        with phone_lock({str(tmp_path / 'cache' / 'locks')!r}, 'tcp:127.0.0.1:{port}', {phone.serial!r}):
            print('held', flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        launcher = tmp_path / "benchmark_model"
        write_benchmark_launcher(launcher)
        r = runner.invoke(app, ["profile", str(artifact), "--device", phone.serial, "--harness", str(launcher),
                                "--adb-server", f"127.0.0.1:{port}", "--runs", "2", "--results",
                                str(tmp_path / "r.jsonl")])
        assert r.exit_code == 1 and f"phone {phone.serial} is in use by another edgekit run (pid {holder.pid})" \
            in r.stderr
        assert not any("push" in c or "benchmark_model" in c for c in phone.commands)
    finally:
        holder.kill()
        holder.wait()
    r = runner.invoke(app, ["profile", str(artifact), "--device", phone.serial, "--harness", str(launcher),
                            "--adb-server", f"127.0.0.1:{port}", "--runs", "2", "--warmup", "0", "--results",
                            str(tmp_path / "r.jsonl"), "--json"])
    assert r.exit_code == 0, r.output  # released when its holder died
    assert json.loads(r.stdout)[0]["device"]["adb_server"] == f"tcp:127.0.0.1:{port}"


# ---- eval --device -------------------------------------------------------------------------------------------
def test_eval_on_a_phone_resumes_after_the_phone_drops(artifact, connect, tmp_path, own_cache):
    """`eval ARTIFACT --device`: the artifact's scores from the phone, one image on it at a time. The
    phone drops after two images; the same command, once it is back, scores only the rest and gives
    the host's figures (the stand-in's CPU path is the host's own)."""
    import eval_data

    data = tmp_path / "cityscapes"
    eval_data.cityscapes(data)
    host = runner.invoke(app, ["eval", str(artifact), "--data", str(data), "--json"])
    assert host.exit_code == 0, host.output
    want = json.loads(host.stdout)
    phone = connect("flaky", drop_on="--output_filepath", drop_after=2)
    launcher = tmp_path / "benchmark_model"
    write_benchmark_launcher(launcher)
    args = ["eval", str(artifact), "--data", str(data), "--device", phone.serial, "--harness", str(launcher), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and f"lost {phone.serial} mid-run" in r.stderr and "resume" in r.stderr, r.output
    subprocess.run(["adb", "connect", phone.serial], capture_output=True, timeout=30)
    subprocess.run(["adb", "-s", phone.serial, "wait-for-device"], capture_output=True, timeout=30)
    before = sum("--output_filepath" in c for c in phone.commands)
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["resumed_images"] == 2 and sum("--output_filepath" in c for c in phone.commands) - before == 2
    assert got["device"]["serial"] == phone.serial and phone.serial in got["runner"]
    assert got["artifact"]["value"] == pytest.approx(want["artifact"]["value"], abs=1e-9)
    assert got["delta"] == pytest.approx(want["delta"], abs=1e-9)
    assert not list((Path(artifact).parent / ".edgekit-cache").glob("journal-*"))  # removed once complete
    assert not list(phone.device_path("/data/local/tmp").iterdir())


@pytest.mark.slow  # an SR TFLite export and about 40 phone runs (a tile each): 85 s here
def test_an_sr_artifact_verifies_and_evaluates_on_a_phone(shared_artifact, connect, tmp_path, own_cache):
    """The phone runs an SR artifact tile by tile through benchmark_model's own flags; its PSNR-Y is the
    host's (the stand-in phone's CPU path is the host's own)."""
    import shutil

    from edgekit.demo_data import super_resolution

    src = Path(shared_artifact("sr-x2", "tflite", "fp32", "64x96").artifact_dir)
    art = shutil.copytree(src, tmp_path / src.name)
    phone = connect()
    launcher = tmp_path / "benchmark_model"
    write_benchmark_launcher(launcher)
    r = runner.invoke(app, ["verify", str(art), "--device", phone.serial, "--harness", str(launcher), "--json"])
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)["devices"]
    assert rec["verification"]["agreement_kind"].startswith("8-bit") and rec["verification"]["psnr_y_db_min"] > 60
    data = tmp_path / "photos"
    super_resolution(data, "hr-only", names=("bear.jpeg",))
    host = json.loads(runner.invoke(app, ["eval", str(art), "--data", str(data), "--json"]).stdout)
    r = runner.invoke(app, ["eval", str(art), "--data", str(data), "--device", phone.serial, "--harness",
                            str(launcher), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["metric"] == "PSNR-Y" and got["artifact"]["value"] == pytest.approx(host["artifact"]["value"], abs=1e-6)
    assert not list(phone.device_path("/data/local/tmp").iterdir())


def test_sweep_on_two_phones_of_one_profile(artifact, connect, tmp_path, own_cache):
    """`sweep --device s8gen1` with two such phones: each cell is measured on both at once, the row
    keeps each phone's figure; run again, both come from results.jsonl; one phone gone, the row says so."""
    import shutil

    a, b = connect("a"), connect("b")
    launcher = tmp_path / "benchmark_model"
    write_benchmark_launcher(launcher)
    assert runner.invoke(app, ["harness", "add", str(launcher)]).exit_code == 0
    out = tmp_path / "sweep"
    shutil.copytree(artifact, out / Path(artifact).name)  # the cell's artifact, reused as the sweep's own
    args = ["sweep", "--variants", "b0-seg", "--resolutions", "64x128", "--device", "s8gen1", "--output", str(out),
            "--runs", "3", "--warmup", "0", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    (row,) = result["rows"]
    assert row["status"] == "ok" and row["exported"] == "reused" and row["profiled"] == "measured"
    assert sorted(row["phones"]) == sorted([a.serial, b.serial]) and sorted(result["phones"]) == sorted(row["phones"])
    assert row["latency_ms"] == pytest.approx(float(np.median(list(row["phones"].values()))))
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and json.loads(r.stdout)["rows"][0]["profiled"] == "from results.jsonl"
    assert len(read_results(out / "results.jsonl")) == 2


# ---- before the phone: LiteRT's GPU-delegate analysis ------------------------------------------------------
def test_the_export_records_litert_gpu_analysis(artifact):
    """Every TFLite export keeps the analyzer's verdict (b0-seg: every node supported) and its caveat."""
    from edgekit.targets.tflite.runner import gpu_compatibility

    gpu = read_manifest(artifact).target_info["gpu_delegate"]
    assert gpu["compatible"] and gpu["refused"] == [] and gpu["runtime_version"]
    assert "hint" in gpu["note"]
    assert gpu_compatibility(read_manifest(artifact).model_path) == gpu  # the analyzer is deterministic


def test_refused_nodes_are_read_from_the_analyzers_report():
    """The report's shape as tflite/tools/model_analyzer.cc writes it: the warning under each refused op,
    then a summary per subgraph."""
    from edgekit.targets.tflite.runner import parse_gpu_analysis

    text = ("Subgraph#0 main(T#0) -> [T#9]\n  Op#0 RELU(T#0) -> [T#6]\n  Op#1 BUCKETIZE(T#6) -> [T#9]\n"
            "GPU COMPATIBILITY WARNING: Not supported op BUCKETIZE\n\n"
            "GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1 with TFLite "
            "runtime version 2.21.0\n\nTensors of Subgraph#0\n")
    got = parse_gpu_analysis(text)
    assert not got["compatible"] and got["refused"] == [{"node": 1, "op": "BUCKETIZE",
                                                        "why": "Not supported op BUCKETIZE"}]


def test_an_onnx_artifact_is_profiled_on_a_phone_with_the_cpu_ep(onnx_b0, tmp_path, connect, monkeypatch):
    """onnxruntime_perf_test (given once, as for QNN) with -e cpu, through real adb on a virtual phone;
    no QNN libraries are needed for the CPU execution provider."""
    from edgekit.android_harness.host_perf_test import write_launcher

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    program = tmp_path / "onnxruntime_perf_test"
    write_launcher(program)
    assert runner.invoke(app, ["harness", "add", str(program), "--kind", "onnxruntime_perf_test"]).exit_code == 0
    phone = connect()
    r = runner.invoke(app, ["profile", onnx_b0.artifact_dir, "--device", "s8gen1", "--runs", "3", "--results",
                            str(tmp_path / "r.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)
    assert rec["target"] == "onnx" and rec["delegate"] == "cpu" and rec["device"]["profile"] == "s8gen1"
    assert rec["runs"] == 3 and rec["median_ms"] > 0
    ran = next(c for c in phone.commands if "onnxruntime_perf_test" in c and " -e " in c)
    assert "-m times -r 3 -I -x 4 -e cpu /data/local/tmp/edgekit/" in ran and "taskset f0" in ran
    r = runner.invoke(app, ["profile", onnx_b0.artifact_dir, "--device", "s8gen1", "--delegate", "npu"])
    one_line_error(r, "--delegate 'npu' is not one of: cpu")
