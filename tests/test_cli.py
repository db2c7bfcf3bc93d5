"""The CLI: thin commands, JSON for scripts, one-line errors, instant --help."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from conftest import REPO, error_line, run_edgekit
from edgekit.cli import app
from edgekit.models import build_model
from edgekit.registry import VARIANTS, get_variant
from edgekit.targets import TARGETS

runner = CliRunner()


def test_help_does_not_import_heavy_frameworks():
    code = "import sys, edgekit.cli; print(sorted(m for m in ('torch', 'tensorflow', 'coremltools', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_variants_json():
    result = runner.invoke(app, ["variants", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list(VARIANTS)
    b0 = rows[0]
    assert b0["aliases"] == ["b0-seg"] and b0["paper_params_m"] == "0.7" and b0["paper_gmacs"] == "4.4"


def test_variants_table():
    result = runner.invoke(app, ["variants"])
    assert result.exit_code == 0 and "m5-cls" in result.stdout


def test_info_json_reports_measured_next_to_paper():
    result = runner.invoke(app, ["info", "b0-seg", "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["variant"] == "b0-seg-cityscapes" and d["resolution"] == [1024, 2048]
    assert d["output"]["shape"] == [1, 19, 128, 256]
    assert d["params_m"]["paper"] == 0.7 and d["params_m"]["agrees"] is True
    assert abs(d["gmacs"]["measured"] - 4.39) < 0.01 and d["gmacs"]["agrees"] is True
    assert d["paper_latency"][0] == {"device": "s8gen1", "resolution": [960, 1920], "ms": 200,
                                     "runtime": "tflite-fp32-cpu"}
    assert d["weights"] is None


def test_info_table_at_other_resolution():
    result = runner.invoke(app, ["info", "b1-cls", "-r", "256"])
    assert result.exit_code == 0, result.output
    assert "0.68G" in result.stdout and "random initialisation" in result.stdout


def test_info_with_weights(tmp_path):
    torch.save({"model": build_model(get_variant("m0-cls")).state_dict()}, tmp_path / "m0.pth")
    result = runner.invoke(app, ["info", "m0-cls", "--weights", str(tmp_path / "m0.pth"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["weights"]["tensors"] == 699


def _one_line_error(args, needle):
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.stdout == ""
    err = error_line(result.stderr)
    assert err.startswith("error: ") and needle in err and "\n" not in err and "Traceback" not in err


def test_bad_input_gives_one_line_errors(tmp_path):
    _one_line_error(["info", "b0-sg"], "did you mean b0-seg")
    _one_line_error(["info", "b0-seg", "-r", "100x200"], "multiple of 32")
    _one_line_error(["info", "b0-seg", "-r", "-64"], "positive")
    _one_line_error(["info", "b0-seg", "--weights", str(tmp_path / "none.pt")], "checkpoint not found")
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    _one_line_error(["info", "b0-seg", "--weights", str(tmp_path / "bad.pt")], "not a PyTorch checkpoint")
    torch.save(build_model(get_variant("b0-cls")).state_dict(), tmp_path / "b0cls.pt")
    _one_line_error(["info", "b0-seg", "--weights", str(tmp_path / "b0cls.pt")], "does not fit b0-seg-cityscapes")


def test_debug_shows_the_traceback():
    result = runner.invoke(app, ["--debug", "info", "nope"])
    assert result.exit_code == 1 and result.exception is not None
    assert type(result.exception).__name__ == "EdgekitError"


def test_inspect_json_shows_rewrites_and_their_effect():
    result = runner.invoke(app, ["inspect", "b0-seg", "--target", "tflite", "-p", "fp16", "-r", "256x512", "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert [r["name"] for r in d["rewrites"]] == [
        "fold_batchnorm", "static_attention", "fp16_safe_attention", "bicubic_exact", "nearest_depth_to_space"]
    assert d["weights"] is None and "random weights" in d["weights_note"]
    exact = {u["upsample"]: u for u in d["upsample_options"]}
    assert exact["exact"]["vs_trained"]["agreement"] > 0.999
    assert exact["bilinear"]["vs_trained"]["sqnr_db_min"] < exact["exact"]["vs_trained"]["sqnr_db_min"]
    assert d["fp16"]["finite"] and d["graph"]["shape_ops"] == 0 and d["graph"]["batchnorm_nodes"] == 0
    # nearest x2 as Concat + DepthToSpace: no Resize left for TFLite (XNNPACK has no resize-nearest)
    assert "DepthToSpace" in d["graph"]["ops"] and "Resize" not in d["graph"]["ops"] and d["graph"]["max_rank"] == 4


def test_inspect_table():
    result = runner.invoke(app, ["inspect", "m0-cls"])
    assert result.exit_code == 0, result.output
    assert "fold_batchnorm" in result.stdout and "Transpose 48 (attention needs 48)" in result.stdout


def test_inspect_bad_options():
    _one_line_error(["inspect", "b0-seg", "--target", "tensorrt"], "--target 'tensorrt' is not one of")
    _one_line_error(["inspect", "b0-seg", "--upsample", "bicubic"], "not available for tflite")
    _one_line_error(["inspect", "b0-seg", "-p", "int4"], "--precision 'int4' is not one of")


def _commands(group, path=()):
    """Every command of the CLI (typer's click group), with its path, sub-commands included."""
    import typer

    group = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _short_flag_clashes(command) -> list[str]:
    seen: dict[str, str] = {}
    clashes = []
    for param in command.params:
        for flag in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            if flag.startswith("-") and not flag.startswith("--"):
                if flag in seen and seen[flag] != param.name:
                    clashes.append(f"{flag}: --{seen[flag]} and --{param.name}")
                seen[flag] = param.name
    return clashes


def test_every_short_flag_means_one_option_within_a_command():
    found = {" ".join(path): _short_flag_clashes(c) for path, c in _commands(app)}
    assert len(found) > 10 and {k: v for k, v in found.items() if v} == {}


def test_the_short_flag_check_sees_a_clash():
    import click

    command = click.Command("x", params=[click.Option(["--data", "-d"]), click.Option(["--device", "-d"])])
    assert _short_flag_clashes(command) == ["-d: --data and --device"]


def test_eval_d_is_data(tmp_path):
    """`edgekit eval b0-seg -d DIR` reaches the data folder (not "Missing option '--data'")."""
    result = runner.invoke(app, ["eval", "b0-seg", "-d", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "Missing option" not in result.output
    assert "nowhere" in result.output


def test_help_shows_no_value_for_a_switch():
    for command in ("export", "verify", "profile", "sweep", "package"):
        r = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0 and "<bool>" not in r.stdout, command
        assert "--json" in r.stdout and "Print machine-readable JSON" in r.stdout
    r = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert "--overwrite " in r.stdout and "--resolution" in r.stdout and "<str>" in r.stdout  # valued ones keep it


# CoreML's and ExecuTorch's runs (40-43 s each here) are in the slow run; the default keeps the rest
@pytest.mark.parametrize("target", [pytest.param(t, marks=pytest.mark.slow) if t in ("coreml", "executorch") else t
                                    for t in sorted(TARGETS)])
def test_an_export_prints_only_edgekits_lines_on_stderr(tmp_path, target):
    """Through a pipe, stderr holds edgekit's progress, one line per step, and no framework's line."""
    import re

    framework = re.compile(r"^[WIEF]\d{4} |^WARNING|^INFO|absl|Traceback|Warning:|^\s+File ")
    done = run_edgekit("export", "b0-seg", "-r", "64x128", "-t", target, "-o", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines and lines[0].startswith("building b0-seg-cityscapes at 64x128"), lines
    assert [line for line in lines if framework.search(line)] == []
    artifact = next(tmp_path.iterdir())
    done = run_edgekit("verify", str(artifact))
    assert done.returncode == 0 and not [line for line in done.stderr.splitlines() if framework.search(line)]


def test_verbose_shows_the_frameworks_output(tmp_path):
    done = run_edgekit("--verbose", "export", "b0-seg", "-r", "64x128", "-o", str(tmp_path))
    assert done.returncode == 0
    assert "--- onnx2tf ---" in done.stderr


def test_interrupt_says_so_and_leaves_nothing(tmp_path):
    # Ctrl-C as a terminal delivers it: the child starts with SIGINT at its default (a process started with
    # it ignored keeps it ignored, and the suite's worker may have inherited or set that)
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "export", "b0-seg", "-r", "256x512", "-o",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)  # the export's temp folder appears once the model is converting
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    # the progress lines (stderr is a pipe here), then the one line the interruption gets
    assert err.strip().splitlines()[-1] == "interrupted: nothing half-written was left (outputs are written atomically)"
    assert list(tmp_path.iterdir()) == []


def test_inspect_reports_progress():
    from edgekit.inspect import inspect_variant

    seen = []
    inspect_variant("b0-seg", resolution="64x128", runs=1, progress=seen.append)
    assert seen[0].startswith("building") and "measuring fold_batchnorm" in seen and len(seen) >= 8


def test_an_in_process_debug_run_does_not_leave_verbose_on():
    from edgekit.logs import VERBOSE_ENV

    assert VERBOSE_ENV not in os.environ
    r = runner.invoke(app, ["--debug", "variants", "--json"])
    assert r.exit_code == 0 and VERBOSE_ENV not in os.environ


def test_a_variant_given_as_an_artifact_and_an_output_that_cannot_be_made_are_said_plainly(tmp_path):
    r = runner.invoke(app, ["predict", "b0-seg", str(tmp_path / "x.jpg")])
    assert r.exit_code == 1 and "it is a variant, not an artifact; export it first (edgekit export b0-seg)" in r.stderr
    r = runner.invoke(app, ["export", "b0-seg", "-r", "64x128", "-o", "/proc/edgekit-x"])
    assert r.exit_code == 1 and "/proc/edgekit-x is not writable (it cannot be created there)" in r.stderr, r.output
