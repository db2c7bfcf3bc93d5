"""int8 recipes (issue 14): the per-op sensitivity analysis and keeping the most costly ops float."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.export import ExportOptions, export

runner = CliRunner()


def _float_outputs(model_path) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_path))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    return {tensors[o["outputs"][0]]["name"] for o in interp._get_ops_details()
            if o["outputs"] and tensors[o["outputs"][0]]["dtype"] == np.float32}


@pytest.mark.slow  # 68 s here (two int8 exports and a sensitivity pass)
def test_keep_float_keeps_the_most_costly_ops_float(tmp_path):
    m = export(ExportOptions("b0-seg", "tflite", "int8", "64x128", target_options={"keep_float": 5},
                             num_calibration=4, output=tmp_path))
    recipe = m.target_info["int8"]
    kept = recipe["kept_float"]
    assert recipe["keep_float"] == 5 and len(kept) == 5
    assert [k["sqnr_db_min"] for k in kept] == sorted(k["sqnr_db_min"] for k in kept)  # the most costly first
    ranked = recipe["sensitivity"]["most_costly"]
    assert ranked[:5] == kept and "calibration" in recipe["sensitivity"]["measured_on"]
    floats = _float_outputs(m.model_path)
    assert all(k["node"] in floats for k in kept)  # really computed in float in the model file
    # the default recipe measures nothing and keeps nothing extra float
    full = export(ExportOptions("b0-seg", "tflite", "int8", "64x128", num_calibration=4, output=tmp_path / "full"))
    assert full.target_info["int8"]["kept_float"] == [] and full.target_info["int8"]["sensitivity"] is None
    assert not {k["node"] for k in kept} & _float_outputs(full.model_path)


def test_keep_float_needs_int8(tmp_path):
    for args, needle in ((["--keep-float", "3"], "--keep-float needs --precision int8"),
                         (["-p", "int8", "--keep-float", "-1"], "--keep-float must be 0 or more")):
        r = runner.invoke(app, ["export", "b0-seg", "-r", "64x128", *args, "-o", str(tmp_path / "o")])
        assert r.exit_code == 1 and needle in r.stderr, r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # 90 s here (every quantised op int8 alone)
def test_inspect_quantization_ranks_ops_on_held_out_photos():
    r = runner.invoke(app, ["inspect", "b0-seg", "-r", "64x128", "--quantization", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["precision"] == "int8" and d["images"] == ["mit-fig-1.jpeg", "mit-fig-5.jpeg", "mit-fig-6.jpeg",
                                                         "mit-fig-7.jpeg"]
    assert not set(d["images"]) & set(d["calibration"])
    sqnr = [op["sqnr_db_min"] for op in d["ops"]]  # ranked by the worst photo
    assert len(sqnr) > 50 and sqnr == sorted(sqnr) and all(np.isfinite(sqnr))
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD"} <= {op["op"] for op in d["ops"]}
    points = {p["keep_float"]: p for p in d["keep_float"]}
    assert set(points) == {0, 10, 30, 60}
    # each quantised op alone costs less than all of them together
    assert points[0]["sqnr_db_min"] < sqnr[0]
    table = runner.invoke(app, ["inspect", "b0-seg", "-r", "64x128", "--quantization"])
    assert table.exit_code == 0 and "most costly" in table.stdout and "full int8" in table.stdout
    r = runner.invoke(app, ["inspect", "b0-seg", "-t", "onnx", "--quantization"])
    assert r.exit_code == 1 and "--quantization is not available for onnx" in r.stderr


def test_the_int8_default_is_the_measured_recipe_per_variant():
    from edgekit.targets.tflite import INT8_DEFAULT_KEEP_FLOAT, TFLiteOptions, keep_float_for

    frontier = json.loads((Path(__file__).parents[1] / "benchmarks/results/int8_frontier.json").read_text())
    for case in frontier["cases"]:
        passing = [(r["median_ms"], r["options"].get("keep_float", 0)) for r in case["recipes"].values()
                   if r["meets_goal"]]
        # the default is the fastest int8 recipe that met the goal there, or full int8 when none did
        assert keep_float_for(case["variant"], TFLiteOptions())[0] == (min(passing)[1] if passing else 0), case["variant"]
    assert set(INT8_DEFAULT_KEEP_FLOAT) <= {c["variant"] for c in frontier["cases"]}
    assert keep_float_for("b0-cls", TFLiteOptions(keep_float=0)) == (0, "--keep-float")  # the flag wins
