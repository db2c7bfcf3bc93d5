"""Nothing lost, nothing misattributed (issue 13): each point reproduced as a user met it, now with
the behaviour it should have; a quiet terminal; tables that fit; and `edgekit predict`."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from edgekit.artifacts import sha256
from edgekit.cli import app
from edgekit.export import ExportOptions, export
from edgekit.models import build_model
from edgekit.registry import get_variant
from edgekit.targets import TARGETS

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "calibration" / "images"


def _edgekit(*args, cwd=None, env=None, timeout=600):
    """The real command, in its own process: what a user's terminal gets."""
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def _one_line_error(result, needle, code=1):
    err = result.stderr.strip()
    assert result.exit_code == code, result.output
    assert err.startswith("error: ") and needle in err and "\n" not in err, err


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    """A b0-seg TFLite fp32 artifact at 64x128 (module-scoped: several tests copy it)."""
    out = tmp_path_factory.mktemp("integrity")
    return Path(export(ExportOptions("b0-seg", "tflite", "fp32", "64x128", output=out)).artifact_dir)


# 1. profile measured a tampered model and recorded it under the manifest's sha256
def test_profile_refuses_a_changed_model_unless_forced(art, tmp_path):
    copy = tmp_path / art.name
    shutil.copytree(art, copy)
    data = bytearray((copy / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    (copy / "model.tflite").write_bytes(bytes(data))
    results = tmp_path / "r.jsonl"
    args = ["profile", str(copy), "--device", "host", "--runs", "2", "--warmup", "0", "--results", str(results)]
    _one_line_error(runner.invoke(app, args), "does not match the sha256 in its manifest")
    assert not results.exists()
    r = runner.invoke(app, [*args, "--force"])
    assert r.exit_code == 0, r.output
    (record,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert record["sha256"] == sha256(copy / "model.tflite") != record["manifest_sha256"]
    assert record["manifest_sha256"] == json.loads((copy / "edgekit.json").read_text())["sha256"]
    assert "changed since export" in record["integrity"] and "measured anyway" in r.stdout


# 2. re-exporting replaced a trained artifact with a random-weights one, silently
def test_export_never_silently_replaces_other_inputs(tmp_path):
    torch.manual_seed(1)
    weights = tmp_path / "b0.pt"
    torch.save(build_model(get_variant("b0-seg")).state_dict(), weights)
    out = tmp_path / "out"
    trained = export(ExportOptions("b0-seg", "onnx", resolution="64x128", weights=weights, output=out))
    # generic export code, so the quickest target (ONNX; TFLite adds a minute of onnx2tf per export)
    model = Path(trained.model_path)
    before = sha256(model)
    r = runner.invoke(app, ["export", "b0-seg", "-t", "onnx", "-r", "64x128", "-o", str(out)])
    _one_line_error(r, "already holds an artifact made from other weights")
    assert sha256(model) == before  # the trained model is still there, untouched
    again = export(ExportOptions("b0-seg", "onnx", resolution="64x128", weights=weights, output=out))
    assert "same inputs" in again.replaced and again.source["sha256"] == trained.source["sha256"]
    r = runner.invoke(app, ["export", "b0-seg", "-t", "onnx", "-r", "64x128", "-o", str(out), "--overwrite"])
    assert r.exit_code == 0 and "--overwrite" in r.stdout
    assert json.loads((Path(trained.artifact_dir) / "edgekit.json").read_text())["source"]["weights"] is None

    # 5. a trained artifact whose checkpoint moved: verify --weights, checked against the recorded sha256
    export(ExportOptions("b0-seg", "onnx", resolution="64x128", weights=weights, output=out, overwrite=True))
    moved = tmp_path / "elsewhere.pt"
    weights.rename(moved)
    _one_line_error(runner.invoke(app, ["verify", trained.artifact_dir]), "pass --weights with its new path")
    r = runner.invoke(app, ["verify", trained.artifact_dir, "--weights", str(moved), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["random_weights"] is False
    other = tmp_path / "other.pt"
    torch.save(build_model(get_variant("b0-seg")).state_dict(), other)
    _one_line_error(runner.invoke(app, ["verify", trained.artifact_dir, "--weights", str(other)]),
                    "is not the checkpoint this artifact came from")


# 3. and 4. where results go, and what happens when they cannot be written
def test_results_go_next_to_the_artifacts_and_failures_keep_the_measurement(art, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "arts"
    shutil.copytree(art, folder / art.name)
    monkeypatch.chdir(elsewhere)
    r = runner.invoke(app, ["profile", str(folder / art.name), "--runs", "2", "--warmup", "0"])
    assert r.exit_code == 0, r.output
    assert (folder / "results.jsonl").is_file() and list(elsewhere.iterdir()) == []
    assert f"results appended to {folder / 'results.jsonl'}" in r.stdout.replace("\n", "")

    # a results path that is a folder: refused before anything runs
    _one_line_error(runner.invoke(app, ["profile", str(folder), "--results", str(elsewhere)]), "is a folder")

    # the write fails after the measurement: the measurement is printed, the reason said, exit 1
    from edgekit import profile as profiler

    def full_disk(path, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(profiler, "append_result", full_disk)
    r = runner.invoke(app, ["profile", str(folder), "--runs", "2", "--warmup", "0", "--json"])
    assert r.exit_code == 1 and "No space left on device" in r.stderr
    (record,) = json.loads(r.stdout)
    assert record["median_ms"] > 0 and record["results_file"] is None and "only in this output" in record["results_error"]


# 9. profile DIR on a folder of artifacts; a path that is not there
def test_profile_takes_a_folder_of_artifacts(art, tmp_path):
    folder = tmp_path / "arts"
    shutil.copytree(art, folder / art.name)
    r = runner.invoke(app, ["profile", str(folder), "--runs", "2", "--warmup", "0", "--json"])
    assert r.exit_code == 0, r.output
    assert [rec["artifact"] for rec in json.loads(r.stdout)] == [str(folder / art.name)]
    _one_line_error(runner.invoke(app, ["profile", str(tmp_path / "nope")]), "not found")
    (tmp_path / "empty").mkdir()
    _one_line_error(runner.invoke(app, ["profile", str(tmp_path / "empty")]), "holds none")


# 6. a FAILED artifact packaged with exit 0 and nothing in the bundle said so
def test_a_failed_artifact_packages_only_when_allowed_and_then_says_so(tmp_path):
    m = export(ExportOptions("b0-seg", "tflite", "int8", "64x128", target_options={"keep_float": 0},
                             num_calibration=2, output=tmp_path / "a"))
    assert not m.verification["passed"]
    out = tmp_path / "b"
    _one_line_error(runner.invoke(app, ["package", m.artifact_dir, "--platform", "android", "-o", str(out)]),
                    "FAILED its verification")
    assert not out.exists()
    r = runner.invoke(app, ["package", m.artifact_dir, "--platform", "android", "-o", str(out), "--allow-failed"])
    assert r.exit_code == 0, r.output
    bundle = out / f"{Path(m.artifact_dir).name}-android"
    assert "**WARNING: VERIFICATION FAILED" in (bundle / "README.md").read_text()
    assert json.loads((bundle / "model.json").read_text())["warnings"][0].startswith("VERIFICATION FAILED")
    header = (bundle / "EdgekitModel.kt").read_text().split("package ai.edgekit.model")[0]
    assert "// WARNING: VERIFICATION FAILED" in header and "FAILED" in r.stdout


# 7. framework noise on stderr
# CoreML's and ExecuTorch's runs (40-43 s each here) are in the slow run; the default keeps the rest
@pytest.mark.parametrize("target", [pytest.param(t, marks=pytest.mark.slow) if t in ("coreml", "executorch") else t
                                    for t in sorted(TARGETS)])
def test_an_export_prints_only_edgekits_lines_on_stderr(tmp_path, target):
    done = _edgekit("export", "b0-seg", "-r", "64x128", "-t", target, "-o", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no TensorFlow/absl/coremltools/torch line
    art = next(tmp_path.iterdir())
    done = _edgekit("verify", str(art))
    assert done.returncode == 0 and done.stderr == ""


def test_verbose_shows_the_frameworks_output(tmp_path):
    done = _edgekit("--verbose", "export", "b0-seg", "-r", "64x128", "-o", str(tmp_path))
    assert done.returncode == 0
    assert "--- onnx2tf ---" in done.stderr


# 8. tables cut the names a user must type, or spread to 161 columns
def test_tables_fit_80_columns_without_cutting_names():
    done = _edgekit("variants", env={"COLUMNS": "80"})
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in ("b1-seg-ade20k", "b3-seg-cityscapes", "m5-cls"):
        assert any(name in line for line in lines), name
    assert "…" not in done.stdout


def test_profile_table_fits_the_terminal(monkeypatch):
    import edgekit.report as report

    record = {"variant": "b1-seg-ade20k", "resolution": [512, 512], "target": "tflite", "precision": "int8-dynamic",
              "device": {"serial": "R5CT1234567", "profile": "s8gen1"}, "delegate": "cpu", "threads": 4,
              "init_ms": 25.1, "median_ms": 101.23, "mean_ms": 102.5, "std_ms": 3.1, "p90_ms": 104.2,
              "peak_memory_mb": 88.1, "harness": "benchmark_model",
              "delegate_nodes": {"replaced": 276, "total": 299, "partitions": 24}, "paper": {"ms": 100},
              "vs_paper": 1.01, "random_weights": True, "integrity": "model file as exported",
              "results_file": "r.jsonl", "artifact": "x"}
    for width in (80, 200):
        buffer = io.StringIO()
        monkeypatch.setattr(report, "console", Console(file=buffer, width=width))
        report.profile_table([record])
        text = buffer.getvalue()
        assert max(len(line) for line in text.splitlines()) <= width
        assert "b1-seg-ade20k" in text and "101.23" in text and "…" not in text
        assert ("left out at this width" in text) == (width == 80)


# 10. the smaller ones
def test_threads_must_be_positive(art):
    for value in ("0", "-3"):
        _one_line_error(runner.invoke(app, ["profile", str(art), "--threads", value]), "--threads must be at least 1")
        _one_line_error(runner.invoke(app, ["sweep", "--variants", "b0-seg", "--threads", value]),
                        "--threads must be at least 1")


def test_a_failed_argument_check_creates_no_output_folder(tmp_path):
    out = tmp_path / "out"
    for args in (["--io", "int8"], ["-p", "fp32", "--calibration", str(PHOTOS)], ["-t", "coreml", "--ios", "12"]):
        r = runner.invoke(app, ["export", "b0-seg", *args, "-o", str(out)])
        assert r.exit_code == 1 and not out.exists(), r.output


def test_interrupt_says_so_and_leaves_nothing(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "export", "b0-seg", "-r", "256x512", "-o",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)  # the export's temp folder appears once the model is converting
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted: nothing half-written was left (outputs are written atomically)"
    assert list(tmp_path.iterdir()) == []


def test_inspect_reports_progress():
    from edgekit.inspect import inspect_variant

    seen = []
    inspect_variant("b0-seg", resolution="64x128", runs=1, progress=seen.append)
    assert seen[0].startswith("building") and "measuring fold_batchnorm" in seen and len(seen) >= 8


# edgekit predict
def test_predict_segmentation_writes_the_pictures(art, tmp_path):
    r = runner.invoke(app, ["predict", str(art), str(PHOTOS / "city.png"), "-o", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    (p,) = result["predictions"]
    overlay, classes = Image.open(p["files"]["overlay"]), Image.open(p["files"]["classes"])
    assert classes.size == (2048, 1024) and overlay.mode == "RGB"
    strip = overlay.height - classes.height  # the RANDOM WEIGHTS banner: a margin above the photo
    assert overlay.width == 2048 and 14 < strip < 80
    assert classes.mode == "P" and np.asarray(classes).max() < 19  # pixel value = class index
    from edgekit.labels import palette

    assert classes.getpalette()[:19 * 3] == [c for rgb in palette("cityscapes") for c in rgb]
    assert sum(c["share"] for c in p["classes"]) == pytest.approx(1.0)
    pixels = np.asarray(overlay)
    assert pixels[5, 5].tolist() == [180, 0, 0] and pixels[strip + 2, 5].tolist() != [180, 0, 0]  # photo uncovered
    # the classes at photo size from the logits resized bicubic, as the official evaluation does: not blocks
    # of 8x8 pixels (1024x2048 from a 1/8 map); a class boundary that runs at a 1-pixel step somewhere
    cls = np.asarray(classes)
    assert (cls[:, 1:] != cls[:, :-1]).any(axis=0)[np.arange(2047) % 8 != 7].any()
    assert result["random_weights"] and "mean nothing" in runner.invoke(
        app, ["predict", str(art), str(PHOTOS / "city.png"), "-o", str(tmp_path)]).stdout


def test_predict_classifier_top5_and_refusals(tmp_path, shared_artifact):
    m = export(ExportOptions("b0-cls", "tflite", "fp32", "64", output=tmp_path / "a"))
    r = runner.invoke(app, ["predict", m.artifact_dir, str(PHOTOS / "cat.jpg"), "-o", str(tmp_path / "p"), "--json"])
    assert r.exit_code == 0, r.output
    (p,) = json.loads(r.stdout)["predictions"]
    probs = [t["probability"] for t in p["top"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    assert Image.open(p["files"]["top5"]).size[0] > 448
    _one_line_error(runner.invoke(app, ["predict", m.artifact_dir, str(tmp_path / "none.jpg")]), "not found")
    # CoreML off macOS: its proxy (the converted torch model, in the device's fp16) runs, and says so
    coreml = shared_artifact("b0-seg", "coreml", "fp16", "64x128")
    r = runner.invoke(app, ["predict", coreml.artifact_dir, str(PHOTOS / "city.png"), "-o", str(tmp_path / "q"),
                            "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["proxy"] and result["runner"].startswith("the torch model that was converted, run by PyTorch in fp16")
    assert "CoreML prediction needs macOS" in result["runner"]
    (p,) = result["predictions"]
    top = np.asarray(Image.open(p["files"]["overlay"]))
    strip = Image.open(p["files"]["overlay"]).height - Image.open(p["files"]["classes"]).height
    assert (top[:strip, 5] == [180, 0, 0]).all(axis=1).mean() > 0.5  # two banners: random weights, proxy


def test_an_in_process_debug_run_does_not_leave_verbose_on():
    from edgekit.logs import VERBOSE_ENV

    assert VERBOSE_ENV not in os.environ
    r = runner.invoke(app, ["--debug", "variants", "--json"])
    assert r.exit_code == 0 and VERBOSE_ENV not in os.environ
