"""The CLI: thin commands, JSON for scripts, one-line errors, instant --help."""

import json
import subprocess
import sys

import torch
from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.models import build_model
from edgekit.registry import VARIANTS, get_variant

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
    err = result.stderr.strip()
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
