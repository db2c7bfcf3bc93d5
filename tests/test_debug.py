"""`edgekit debug`, checked against planted faults whose place is known: a conv's weights altered inside
a TFLite flatbuffer and an ONNX graph after export, a channel scaled past fp16's range, and the
trained-like stand-in's spread channels in int8. (tests/test_conformance.py runs it on every target.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import error_line, one_line_error
from edgekit.artifacts import sha256
from edgekit.cli import app
from edgekit.layer_debug import DebugOptions, debug_artifact, deploy_form_of

runner = CliRunner()
SIZE = "64x128"
PLANTED = "backbone.stages.1.op_list.0.main.inverted_conv.conv"  # a 1x1 conv mid-backbone


def _copy(artifact_dir: str, tmp_path: Path) -> Path:
    folder = tmp_path / Path(artifact_dir).name
    shutil.copytree(artifact_dir, folder)
    return folder


def _restamp(folder: Path, model_file: Path) -> None:
    """The manifest made to record the altered model, as a converter that wrote it would have."""
    path = folder / "edgekit.json"
    manifest = json.loads(path.read_text())
    manifest["sha256"] = sha256(model_file)
    path.write_text(json.dumps(manifest))


def _planted_weights(folder: Path) -> np.ndarray:
    from edgekit.manifest import read_manifest
    from edgekit.reference import source_model
    from edgekit.registry import get_variant

    m = read_manifest(folder)
    deploy = deploy_form_of(m, source_model(get_variant(m.variant), m.size, None)[0])
    return dict(deploy.named_modules())[PLANTED].weight.detach().numpy()


def _assert_found_at_the_plant(result: dict) -> None:
    assert result["first_below"]["module"] == PLANTED, result["first_below"]
    assert result["largest_drop"]["module"] == PLANTED, result["largest_drop"]
    rows = {r["module"]: r for r in result["rows"]}
    assert rows[PLANTED]["alone_db"] < 10 and rows[PLANTED]["sqnr_db_min"] < 10
    before = result["rows"][:[r["module"] for r in result["rows"]].index(PLANTED)]
    assert before and all(r["sqnr_db_min"] > result["bar_db"] for r in before)


def test_a_conv_altered_inside_the_tflite_flatbuffer_is_named(shared_artifact, tmp_path):
    folder = _copy(shared_artifact("b0-seg", "tflite", "fp32", SIZE).artifact_dir, tmp_path)
    model = folder / "model.tflite"
    weights = _planted_weights(folder)  # (O, I, 1, 1): the same bytes as TFLite's (O, 1, 1, I)
    data = model.read_bytes()
    stored = np.ascontiguousarray(weights.transpose(0, 2, 3, 1), dtype=np.float32).tobytes()
    assert data.count(stored) == 1, "the conv's weights are stored once, as exported"
    model.write_bytes(data.replace(stored, (np.frombuffer(stored, np.float32) * -2).astype(np.float32).tobytes()))
    _restamp(folder, model)
    result = debug_artifact(DebugOptions(folder, picture=tmp_path / "debug.png"))
    _assert_found_at_the_plant(result)
    assert (tmp_path / "debug.png").stat().st_size > 10_000
    assert "XNNPACK off" in result["ran"]
    r = runner.invoke(app, ["verify", str(folder)])  # a FAILed verification names the layer in its one line
    assert r.exit_code == 3
    line = error_line(r.stderr)
    assert f"first below 80 dB: {PLANTED} (CONV_2D" in line and f"largest drop: {PLANTED}" in line
    assert f"edgekit debug {folder}" in line


def test_a_conv_altered_inside_the_onnx_graph_is_named(shared_artifact, tmp_path):
    import onnx
    from onnx import numpy_helper

    folder = _copy(shared_artifact("b0-seg", "onnx", "fp32", SIZE).artifact_dir, tmp_path)
    model_file = folder / "model.onnx"
    model = onnx.load(str(model_file))
    (init,) = [i for i in model.graph.initializer if i.name == f"{PLANTED}.weight"]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * -2, init.name))
    onnx.save(model, str(model_file))
    _restamp(folder, model_file)
    result = debug_artifact(DebugOptions(folder, picture=tmp_path / "debug.png"))
    _assert_found_at_the_plant(result)
    assert result["unmatched"]["modules_without_tensor"] == []  # the ONNX artifact keeps every module output


def test_a_channel_past_fp16_range_is_flagged_there_and_not_before(tmp_path):
    """A checkpoint whose one BatchNorm channel is scaled 1e5: fp32 carries it, an fp16 artifact cannot.
    The flag is raised at the conv it folds into, and nowhere before."""
    import torch

    from edgekit.export import ExportOptions, export
    from edgekit.reference import source_model
    from edgekit.registry import get_variant, parse_resolution

    variant = get_variant("b0-seg")
    model, _ = source_model(variant, parse_resolution(SIZE, variant), None)
    state = model.state_dict()
    norm = PLANTED.rsplit(".", 1)[0] + ".norm"
    for p in ("weight", "bias"):
        state[f"{norm}.{p}"][3] *= 1e5
    torch.save({"state_dict": state}, tmp_path / "scaled.pt")
    m = export(ExportOptions("b0-seg", "coreml", "fp16", SIZE, weights=tmp_path / "scaled.pt", output=tmp_path / "a"))
    result = debug_artifact(DebugOptions(Path(m.artifact_dir), picture=tmp_path / "debug.png"))
    assert result["fp16_flags"] and "proxy" in result["notes"][0]
    flagged = [i for i, r in enumerate(result["rows"]) if any(f.startswith("fp16") for f in r["flags"])]
    assert flagged, "no fp16 flag raised"
    first = result["rows"][flagged[0]]
    assert first["module"] == PLANTED and "fp16-overflow" in first["flags"] and first["fp16_overflow"] > 0
    assert first["sqnr_db_min"] < result["bar_db"]  # PyTorch's fp16 arithmetic overflows there


def test_the_trained_like_stand_in_in_int8_loses_most_where_channels_spread(tmp_path):
    """The layers adding the most error are those whose median channel spans few int8 steps, and
    they carry the spread flag."""
    from edgekit.export import ExportOptions, export

    m = export(ExportOptions("b0-seg", "tflite", "int8", SIZE, target_options={"keep_float": 0},
                             stand_in="trained-like", output=tmp_path / "a"))
    result = debug_artifact(DebugOptions(Path(m.artifact_dir), picture=tmp_path / "debug.png"))
    rows = [r for r in result["rows"] if r["alone_db"] is not None]
    worst = sorted(rows, key=lambda r: r["alone_db"])[:5]
    assert result["largest_drop"]["module"] == worst[0]["module"]
    assert all("int8-spread" in r["flags"] for r in worst), [(r["module"], r["flags"]) for r in worst]
    wide = [r for r in rows if r["quantization"] is not None and r["median_channel_steps"] > 64]
    assert wide and max(r["alone_db"] for r in worst) < min(r["alone_db"] for r in wide)


def test_the_cli_prints_every_row_and_the_verdict_and_json_carries_the_figures(shared_artifact, tmp_path):
    m = shared_artifact("b0-seg", "onnx", "fp32", SIZE)
    r = runner.invoke(app, ["debug", m.artifact_dir, "--picture", str(tmp_path / "d.png"), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    keys = {"tensor", "op", "module", "shape", "sqnr_db_median", "sqnr_db_min", "max_abs_error", "alone_db",
            "drop_db", "flags", "fp16_overflow", "fp16_flushed"}
    assert result["rows"] and all(keys <= set(row) for row in result["rows"])
    assert result["first_below"] is None and result["picture"] == str(tmp_path / "d.png")
    r = runner.invoke(app, ["debug", m.artifact_dir, "--picture", str(tmp_path / "d.png")], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert all(row["module"] in r.stdout for row in result["rows"])
    assert r.stdout.rstrip().splitlines()[-1] == "no layer below the bar"


def test_bad_inputs_are_one_line_and_write_nothing(tmp_path):
    r = runner.invoke(app, ["debug", str(tmp_path / "missing"), "--picture", str(tmp_path / "d.png")])
    one_line_error(r, "missing")
    assert not (tmp_path / "d.png").exists()
