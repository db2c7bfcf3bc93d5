"""`edgekit sweep`: a real grid (exports + host harness), killed mid-way and resumed, and its picture."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.errors import EdgekitError
from edgekit.sweep import SweepOptions, plan
from edgekit.sweep_plot import paper_points, plot

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
GRID = ["sweep", "--variants", "b0-seg", "--precisions", "fp32,fp16", "--resolutions", "64x128",
        "--runs", "3", "--warmup", "1"]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sweep_killed_midway_resumes_without_redoing(tmp_path):
    out = tmp_path / "artifacts"
    results = out / "results.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", *GRID, "--output", str(out)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 600
        while not _records(results) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup code runs: the hardest interruption
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    first = _records(results)
    assert len(first) == 1 and first[0]["precision"] == "fp32"

    result = runner.invoke(app, [*GRID, "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["precision"], r["status"]) for r in rows] == [("fp32", "ok"), ("fp16", "ok")]
    fp32, fp16 = rows
    assert fp32["exported"] == "reused" and fp32["profiled"] == "from results.jsonl"  # not redone
    assert fp16["exported"] == "exported" and fp16["profiled"] == "measured"
    records = _records(results)
    assert len(records) == 2 and records[0] == first[0]  # the finished cell's measurement is untouched
    assert fp32["latency_ms"] == first[0]["median_ms"] and fp16["latency_ms"] == records[1]["median_ms"]
    assert fp32["sqnr_db_min"] > 60 and fp32["size_mb"] > 0 and fp32["gmacs"] == pytest.approx(0.0172, rel=0.01)
    # the export the kill cut short left a temp folder; the rerun's export of that cell removed it
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    png = out / "sweep.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a third run: everything is done, nothing is measured again
    again = runner.invoke(app, [*GRID, "--output", str(out)])
    assert again.exit_code == 0 and "2 of 2 cells were already measured" in again.stdout
    assert len(_records(results)) == 2


def test_a_failed_cell_is_reported_and_retried(b0_fp32, tmp_path, monkeypatch):
    """One cell's export fails: the grid goes on, the table says why, and the next run tries that
    cell again (a phone may have been unplugged) while the finished one is not redone."""
    import shutil

    import edgekit.sweep as sweep_module

    _, manifest = b0_fp32
    out = tmp_path / "artifacts"
    shutil.copytree(manifest.artifact_dir, out / Path(manifest.artifact_dir).name)  # fp32: on disk already
    real_export, attempts = sweep_module._export, []

    def export_failing_fp16(cell, opts, device_profile, progress, data=None):
        if cell.precision == "fp16":
            attempts.append(cell.label)
            raise EdgekitError("converter crashed")
        return real_export(cell, opts, device_profile, progress, data)

    monkeypatch.setattr(sweep_module, "_export", export_failing_fp16)
    args = ["sweep", "--variants", "b0-seg", "--precisions", "fp32,fp16", "--resolutions", "128x256", "--runs", "2",
            "--warmup", "0", "--output", str(out), "--json"]
    for run in (1, 2):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "1 of 2 cells failed to run: b0-seg-cityscapes 128x256 tflite fp16 (export " \
            "failed)" in result.stderr, result.output
        fp32, fp16 = json.loads(result.stdout)["rows"]
        assert (fp16["status"], fp16["error"], fp16["latency_ms"]) == ("export failed", "converter crashed", None)
        assert fp32["status"] == "ok" and fp32["profiled"] == ("measured" if run == 1 else "from results.jsonl")
        assert len(attempts) == run
    assert len(_records(out / "results.jsonl")) == 1


def test_plan_validates_before_any_work():
    cells = plan(SweepOptions(("b0-seg", "m0-cls", "b0-seg"), ("tflite",), ("fp32", "int8")))
    assert [c.label for c in cells] == ["b0-seg-cityscapes 1024x2048 tflite fp32", "b0-seg-cityscapes 1024x2048 tflite int8",
                                        "m0-cls 224x224 tflite fp32", "m0-cls 224x224 tflite int8"]
    with pytest.raises(EdgekitError, match="unknown variant 'b9-seg'"):
        plan(SweepOptions(("b0-seg", "b9-seg")))
    with pytest.raises(EdgekitError, match="--targets 'tf' is not one of"):
        plan(SweepOptions(("b0-seg",), ("tf",)))
    with pytest.raises(EdgekitError, match="'int4' is not a precision of tflite"):
        plan(SweepOptions(("b0-seg",), ("tflite",), ("fp32", "int4")))
    assert len(plan(SweepOptions(("b0-seg",), ("tflite", "coreml"), ("int8-dynamic",)))) == 2  # tflite has it
    with pytest.raises(EdgekitError, match="multiple of 32"):
        plan(SweepOptions(("b0-seg",), resolutions=("100x200",)))


def test_paper_points_only_for_their_own_device():
    cache = {}
    s8 = paper_points(["b0-seg-cityscapes", "b1-cls", "m0-cls"], "s8gen1", cache)
    assert [(p["variant"], p["resolution"], p["ms"]) for p in s8] == [
        ("b0-seg-cityscapes", [960, 1920], 200), ("b1-cls", [224, 224], 19), ("b1-cls", [256, 256], 24),
        ("b1-cls", [288, 288], 31)]  # m0 has no published phone latency
    assert s8[1]["gmacs"] == pytest.approx(0.52, rel=0.05)  # our MACs at the paper's resolution
    assert paper_points(["b0-seg-cityscapes"], "host", cache) == []


def test_plot_draws_paper_points_and_labels(tmp_path, monkeypatch):
    import matplotlib.axes

    rows = [{"variant": "b1-cls", "precision": p, "resolution": [224, 224], "gmacs": 0.53, "latency_ms": ms,
             "random_weights": True, "status": "ok"} for p, ms in (("fp32", 20.5), ("int8", 12.0))]
    points = [{"variant": "b1-cls", "resolution": [224, 224], "gmacs": 0.52, "ms": 19, "device": "s8gen1"}]
    drawn = []
    original = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter",
                        lambda self, x, y, **kw: drawn.append((x, y, kw["marker"])) or original(self, x, y, **kw))
    plot(rows, points, "s8gen1", tmp_path / "p.png")
    assert drawn == [(0.53, 20.5, "o"), (0.53, 12.0, "^"), (0.52, 19, "*")]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG" and sorted(os.listdir(tmp_path)) == ["p.png"]


def test_a_phone_sweep_checks_the_phone_before_exporting(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_ADB", str(tmp_path / "no-adb-here"))
    out = tmp_path / "artifacts"
    result = runner.invoke(app, ["sweep", "--variants", "b0-seg", "--device", "s8gen1", "--output", str(out)])
    assert result.exit_code == 1 and "adb not found" in result.stderr
    assert not out.exists()  # nothing exported for a phone that is not there


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


def test_a_cell_that_failed_verification_is_never_hidden(b0_fp32, tmp_path, monkeypatch):
    """At 80 columns the table keeps each cell's verdict, the sweep ends with the failed cells named,
    exits 3 as `export` does, and the picture rings the failed point."""
    import dataclasses

    import matplotlib.axes
    from rich.console import Console

    import edgekit.report as report
    import edgekit.sweep as sweep_module

    _, manifest = b0_fp32
    out = tmp_path / "artifacts"
    shutil.copytree(manifest.artifact_dir, out / Path(manifest.artifact_dir).name)
    failed = dataclasses.replace(manifest, verification={**manifest.verification, "passed": False})
    monkeypatch.setattr(sweep_module, "_export", lambda *a, **k: (failed, True))
    monkeypatch.setattr(report, "console", Console(width=80, soft_wrap=True))
    rings = []
    original = matplotlib.axes.Axes.annotate
    monkeypatch.setattr(matplotlib.axes.Axes, "annotate",
                        lambda self, text, xy, **kw: rings.append(text) or original(self, text, xy, **kw))
    r = runner.invoke(app, ["sweep", "--variants", "b0-seg", "--resolutions", "128x256", "--runs", "2", "--warmup",
                            "0", "--output", str(out)])
    assert r.exit_code == 3, r.output
    lines = r.stdout.splitlines()
    table = lines[:next(i for i, line in enumerate(lines) if line.startswith("└")) + 1]
    assert "VERIFICATION FAILED" in "".join(table) and max(len(line) for line in table) <= 80
    assert "1 of 1 cells FAILED verification: b0-seg-cityscapes 128x256 tflite fp32" in r.stdout
    assert r.stderr.splitlines()[-1].startswith("error: 1 of 1 cells FAILED verification") and "FAILED" in rings


def test_a_cell_the_host_cannot_time_is_exported_and_said_so_not_failed(b0_fp32, tmp_path, monkeypatch):
    """A QNN cell on the host (the simulator has no latency) is a finished cell, like an iPhone's: its
    status says why it was not profiled, and the sweep exits 0."""
    import dataclasses

    import edgekit.sweep as sweep_module

    _, manifest = b0_fp32
    qnn = dataclasses.replace(manifest, target="qnn")
    monkeypatch.setattr(sweep_module, "_export", lambda *a, **k: (qnn, True))
    r = runner.invoke(app, ["sweep", "--variants", "b0-seg", "--resolutions", "128x256", "--output",
                            str(tmp_path / "s"), "--json"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)["rows"]
    assert row["status"].startswith("exported; not profiled (the HTP simulator gives the NPU's numerics")
