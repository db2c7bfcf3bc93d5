"""Defects a new user met in the first hour on a fresh clone (issue 21), each reproduced and now right."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.export import ExportOptions, export

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "calibration" / "images"


@pytest.fixture(scope="module")
def onnx_b0(tmp_path_factory):
    return export(ExportOptions("b0-seg", "onnx", resolution="64x128", output=tmp_path_factory.mktemp("onnx")))


def _one_line(r, needle, code=1):
    err = r.stderr.strip()
    assert r.exit_code == code, r.output
    assert err.startswith("error: ") and needle in err and "\n" not in err, err


def test_predict_takes_files_folders_and_globs(onnx_b0, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("mit-fig-5.jpeg", "mit-fig-6.jpeg"):
        shutil.copy(IMAGES / name, photos / name)
    (photos / "notes.txt").write_text("not a photo")
    out = str(tmp_path / "p")
    for given, expected in (([str(photos)], ["mit-fig-5.jpeg", "mit-fig-6.jpeg"]),
                            ([str(photos / "*-6.jpeg"), str(IMAGES / "city.png")], ["mit-fig-6.jpeg", "city.png"]),
                            ([str(photos / "mit-fig-5.jpeg"), str(photos)], ["mit-fig-5.jpeg", "mit-fig-6.jpeg"])):
        r = runner.invoke(app, ["predict", onnx_b0.artifact_dir, *given, "-o", out, "--json"])
        assert r.exit_code == 0, r.output
        assert [Path(p["image"]).name for p in json.loads(r.stdout)["predictions"]] == expected
    _one_line(runner.invoke(app, ["predict", onnx_b0.artifact_dir, str(photos / "*.gif"), "-o", out]),
              "no .jpg/.jpeg/.png images match")
    _one_line(runner.invoke(app, ["predict", onnx_b0.artifact_dir, str(tmp_path / "missing.jpg"), "-o", out]),
              "missing.jpg not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line(runner.invoke(app, ["predict", onnx_b0.artifact_dir, str(empty), "-o", out]), "has no .jpg/.jpeg/.png")


def test_output_naming_a_file_says_so(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for where in (blocker, blocker / "below"):
        r = runner.invoke(app, ["export", "b0-seg", "-t", "onnx", "-r", "64x128", "-o", str(where)])
        _one_line(r, f"{blocker} is a file (choose another --output)")
        assert "File exists" not in r.stderr
    assert blocker.read_text() == "x"


def test_an_artifact_that_is_not_profiled_does_not_stop_the_others(b0_fp32, onnx_b0, tmp_path):
    _, tflite = b0_fp32
    coreml = export(ExportOptions("b0-cls", "coreml", "fp32", "64", output=tmp_path / "c"))  # an iPhone's
    results = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["profile", coreml.artifact_dir, tflite.artifact_dir, onnx_b0.artifact_dir, "--runs", "2",
                            "--warmup", "0", "--results", str(results), "--json"])
    _one_line(r, "1 of the artifacts named was not profiled")
    assert "is an artifact of the coreml target, which is not profiled" in r.stderr and "a coreml" not in r.stderr
    tflite_rec, onnx_rec, skipped = json.loads(r.stdout)
    assert tflite_rec["target"] == "tflite" and tflite_rec["median_ms"] > 0 and skipped["target"] == "coreml"
    # ONNX artifacts are profiled too: onnxruntime_perf_test's host stand-in, the CPU execution provider
    assert onnx_rec["harness"] == "onnxruntime_perf_test" and onnx_rec["delegate"] == "cpu" and onnx_rec["median_ms"]
    assert [json.loads(line)["target"] for line in results.read_text().splitlines()] == ["tflite", "onnx"]
    # named alone: one line, nothing recorded
    r = runner.invoke(app, ["profile", coreml.artifact_dir, "--results", str(tmp_path / "other.jsonl")])
    _one_line(r, "is an artifact of the coreml target, which is not profiled")
    assert not (tmp_path / "other.jsonl").exists()


def test_help_shows_no_value_for_a_switch():
    for command in ("export", "verify", "profile", "sweep", "package"):
        r = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0 and "<bool>" not in r.stdout, command
        assert "--json" in r.stdout and "Print machine-readable JSON" in r.stdout
    r = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert "--overwrite " in r.stdout and "--resolution" in r.stdout and "<str>" in r.stdout  # valued ones keep it


def test_export_and_verify_take_threads(onnx_b0, tmp_path, monkeypatch):
    import torch

    from edgekit.targets import onnx as onnx_target

    seen, runner_threads = [], []
    real_set, real_runner = torch.set_num_threads, onnx_target.ONNXRunner.__init__
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real_set(n))[1])
    monkeypatch.setattr(onnx_target.ONNXRunner, "__init__",
                        lambda self, path, threads=2, session=None: (runner_threads.append(threads),
                                                                     real_runner(self, path, threads, session))[1])
    before = torch.get_num_threads()
    r = runner.invoke(app, ["verify", onnx_b0.artifact_dir, "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert seen == [1, before] and runner_threads == [1] and torch.get_num_threads() == before  # restored
    r = runner.invoke(app, ["export", "b0-seg", "-t", "onnx", "-r", "64x128", "--threads", "1", "-o",
                            str(tmp_path / "a"), "--json"])
    assert r.exit_code == 0, r.output
    assert seen[2:] == [1, before] and runner_threads[1:] == [1]
    _one_line(runner.invoke(app, ["verify", onnx_b0.artifact_dir, "--threads", "0"]), "--threads must be at least 1")
    _one_line(runner.invoke(app, ["export", "b0-seg", "-t", "onnx", "--threads", "0", "-o", str(tmp_path / "b")]),
              "--threads must be at least 1")
    assert not (tmp_path / "b").exists()


def test_a_coreml_export_leaves_nothing_in_the_temp_folder(tmp_path, monkeypatch):
    import tempfile

    temp = tmp_path / "system-temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    m = export(ExportOptions("b0-cls", "coreml", resolution="64", output=tmp_path / "a"))
    assert Path(m.model_path).is_dir() and tempfile.gettempdir() == str(temp)
    assert sorted(p.name for p in temp.iterdir() if p.suffix == ".mlpackage") == []  # coremltools wrote none here


def test_a_sweep_shows_progress_when_its_output_is_not_a_terminal(b0_fp32, tmp_path):
    _, manifest = b0_fp32
    shutil.copytree(manifest.artifact_dir, tmp_path / "s" / Path(manifest.artifact_dir).name)  # reused, not exported
    r = runner.invoke(app, ["sweep", "--variants", "b0-seg", "--resolutions", "128x256", "--runs", "2", "--warmup",
                            "0", "--output", str(tmp_path / "s"), "--json"])
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert lines[0].startswith("[1/1] b0-seg-cityscapes 128x256 tflite fp32"), lines
    assert any("profiling" in line for line in lines), lines
    json.loads(r.stdout)  # stdout stays the JSON


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
    _one_line(r, "--delegate 'npu' is not one of: cpu")
