"""CoreML on Linux: real coremltools conversions, structure checked, numerics honestly 'needs macOS'."""

from __future__ import annotations

import json
from pathlib import Path

import coremltools as ct
import pytest
from typer.testing import CliRunner

from conftest import error_line, every_variant_resolution
from edgekit.cli import app
from edgekit.export import ExportOptions, export
from edgekit.registry import VARIANTS
from edgekit.verify import PROXY_FP16, PROXY_INT8, verify_artifact

runner = CliRunner()


def test_b0_seg_fp16_image_input(tmp_path):
    m = export(ExportOptions("b0-seg", "coreml", "fp16", "128x256", output=tmp_path))
    art = tmp_path / "b0-seg-cityscapes-128x256-coreml-fp16"
    assert sorted(p.name for p in art.iterdir()) == ["edgekit.json", "labels.txt", "model.mlpackage"]
    assert m.io["input"] == {"name": "image", "shape": [1, 3, 128, 256], "layout": "NCHW",
                             "dtype": "image RGB (CVPixelBuffer)"}
    assert [r["name"] for r in m.rewrites] == ["fold_batchnorm", "static_attention", "fp16_safe_attention",
                                               "bicubic_exact"]
    assert "upsample_nearest_neighbor" in m.ops and "conv" in m.ops
    assert not any("bicubic" in op or "resize_bicubic" in op for op in m.ops)
    v = m.verification
    checks = v["checks"]
    assert checks["structure"]["loads"] and checks["structure"]["io_matches"] and v["passed"]
    assert checks["structure"]["unexpected_casts"] == [] and m.ops.get("cast", 0) <= 1  # fp16 end to end
    # never a pass it did not earn: the package's own outputs need macOS, and the report says what was compared
    assert not v["artifact_run"] and v["not_run"] == "CoreML prediction needs macOS"
    # in fp16 arithmetic, as the device computes: not fp32 figures against the fp16 bar (they were 118 dB)
    assert v["compared"] == PROXY_FP16 and 40 < v["sqnr_db_min"] < 80, v["sqnr_db_min"]
    # every folded conv weight is in the package, equal to the torch weight rounded to fp16
    w = checks["weights"]
    assert w["compared"] == 61 and w["not_found"] == 0 and w["max_error"] == 0.0
    spec = ct.models.MLModel(str(art / "model.mlpackage"), skip_model_load=True)
    meta = spec.user_defined_metadata
    assert meta["variant"] == "b0-seg-cityscapes" and meta["resolution"] == "128x256"
    assert spec.get_spec().specificationVersion >= 7  # iOS 16 mlprogram
    assert json.loads((art / "edgekit.json").read_text())["target_options"] == {"ios": 16, "input": "image", "keep_float": None,
                                                                      "int8_goal": "25,20,1.2", "search_budget": 900.0}


def test_m0_cls_int8_weights_is_a_classifier(tmp_path):
    m = export(ExportOptions("m0-cls", "coreml", "int8-weights", output=tmp_path))
    assert [o["name"] for o in m.io["output"]] == ["classLabel", "classLabel_probs"]
    assert m.ops.get("constexpr_affine_dequantize", 0) > 0  # weights stored as int8
    assert m.verification["passed"]
    w = m.verification["checks"]["weights"]  # stored int8 within half a step (+ fp16 roundings) of the folded weights
    assert w["compared"] == 117 and w["error_unit"] == "int8 steps" and 0.4 < w["max_error"] < 0.66
    spec = ct.models.MLModel(str(tmp_path / "m0-cls-224x224-coreml-int8-weights" / "model.mlpackage"),
                             skip_model_load=True).get_spec()
    assert spec.description.predictedFeatureName == "classLabel"


def test_weight_check_catches_a_changed_weight(tmp_path):
    from edgekit.deploy import make_deploy_form
    from edgekit.reference import source_model
    from edgekit.targets import get_target
    from edgekit.targets.coreml.checks import check_weights

    export(ExportOptions("b0-seg", "coreml", "fp32", "64x128", target_options={"input": "tensor"}, output=tmp_path))
    model, _ = source_model(VARIANTS["b0-seg-cityscapes"], (64, 128), None)
    deploy = make_deploy_form(model, (64, 128), get_target("coreml"), "fp32").model
    package = tmp_path / "b0-seg-cityscapes-64x128-coreml-fp32" / "model.mlpackage"
    assert check_weights(package, deploy, "fp32")["passed"]
    name, weight = next((k, v) for k, v in deploy.state_dict().items() if v.ndim == 4)
    weight.view(-1)[0] += 1e-3
    result = check_weights(package, deploy, "fp32")
    assert not result["passed"] and result["mismatched"] == [name]


def test_int8_searches_its_recipe_on_the_torch_side(tmp_path):
    """CoreML int8 chooses its recipe at export time (edgekit.int8.torch_side.search_torch_model), each recipe
    judged in PyTorch on coremltools' quantised model, and says so; the artifact is the chosen recipe
    (its kept blocks hold no quantiser), and `edgekit verify` rebuilds that same recipe."""
    m = export(ExportOptions("b0-seg", "coreml", "int8", "64x128", target_options={"ios": 17}, output=tmp_path))
    assert m.ops["quantize"] > 0 and m.ops["dequantize"] > 0  # activations int8 in the package
    assert m.calibration["source"] == "builtin" and m.calibration["samples"] == 8
    recipe = m.target_info["int8"]
    search = recipe["search"]
    assert "judged in PyTorch" in recipe["judged_by"] and "macOS" in recipe["judged_by"]
    tried = {t["recipe"]: t for t in search["tried"]}
    assert tried["full int8"]["options"] == {"keep_float": 0, "equalized": False}
    assert all(t["speedup_over_float"] is None for t in tried.values())  # no CoreML runtime here: no speed
    chosen = tried[search["chosen"]]
    meeting = [t for t in tried.values() if t["meets_goal"]]
    if meeting:
        assert chosen["meets_goal"] and chosen["options"]["keep_float"] == min(t["options"]["keep_float"]
                                                                                 for t in meeting)
    assert recipe["keep_float"] == chosen["options"]["keep_float"] == len(recipe["kept_float"])
    searched = [r["name"] for r in m.rewrites if r.get("chosen_by")]
    assert searched == (["cross_layer_equalization"] if chosen["options"]["equalized"] else [])
    assert {s["recipe"]: s["why"] for s in search["skipped"]}["16-bit activations"].startswith("coremltools")
    v = m.verification
    assert v["compared"] == PROXY_INT8  # the calibrated int8 torch model, labelled as what it is
    assert v["tolerance"] == {"sqnr_min_db": 20.0, "sqnr_median_db": 25.0, "pixel_agreement": 0.95}
    assert v["checks"]["weights"]["compared"] > 0 and v["passed"] == (not v["failures"])
    assert all(0 <= i["agreement"] <= 1 and i["sqnr_db"] > 0 for i in v["images"])
    # `edgekit verify` rebuilds the chosen recipe (equalised or not, the same blocks float) from the
    # recorded calibration source and gets the same numbers
    again = verify_artifact(tmp_path / "b0-seg-cityscapes-64x128-coreml-int8")["verification"]
    assert [i["sqnr_db"] for i in again["images"]] == pytest.approx([i["sqnr_db"] for i in v["images"]], abs=1e-6)


def test_kept_blocks_hold_no_quantiser():
    """calibrated_int8(keep_float=...): the named block and everything in it stay float modules."""
    from edgekit.calibration.sources import calibration_set
    from edgekit.deploy import make_deploy_form
    from edgekit.reference import source_model
    from edgekit.registry import get_variant, parse_resolution
    from edgekit.targets import get_target
    from edgekit.targets.coreml.convert import calibrated_int8

    v = get_variant("b0-seg")
    size = parse_resolution("64x128", v)
    calib = calibration_set(v, size, num=2).data
    model, _ = source_model(v, size, None, "plain")
    form = make_deploy_form(model, size, get_target("coreml"), "int8", calibration=calib)
    kept = "backbone.stages.3.op_list.1"
    q = calibrated_int8(form.model, calib, (kept,))

    def quantised(block: str) -> int:
        return sum(1 for name, m in q.named_modules() if name.startswith(block + ".")
                   and "quantized" in type(m).__module__)

    assert quantised(kept) == 0 and quantised("backbone.stages.3.op_list.2") >= 7  # its neighbour is int8


def test_mit_classifier_family(tmp_path):
    m = export(ExportOptions("b1-cls", "coreml", "fp16", "128", output=tmp_path))
    assert m.verification["passed"] and m.verification["checks"]["weights"]["not_found"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_converts_to_fp16(tmp_path, name):
    m = export(ExportOptions(name, "coreml", "fp16", every_variant_resolution(name), output=tmp_path))
    assert m.verification["passed"], m.verification


def test_tensor_input(tmp_path):
    m = export(ExportOptions("b0-seg", "coreml", "fp32", "64x128", target_options={"input": "tensor"}, output=tmp_path))
    assert m.io["input"]["dtype"] == "float32 tensor, normalised"
    assert "fp16_safe_attention" not in [r["name"] for r in m.rewrites]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["-p", "int8"], "from iOS 17: add --ios 17"),
        (["--keep-float", "2"], "--keep-float needs --precision int8"),
        (["-p", "int8", "--ios", "17", "--calibration", "/nonexistent"], "/nonexistent"),
        (["--ios", "15"], "--ios 15 is not one of"),
        (["--input", "video"], "--input 'video' is not one of"),
        (["--layout", "nchw"], "--layout applies to tflite only"),
    ],
)
def test_coreml_bad_input(tmp_path, args, needle):
    result = runner.invoke(app, ["export", "m0-cls", "--target", "coreml", *args, "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and needle in error_line(result.stderr)
    assert not (tmp_path / "o").exists()


def test_unexpected_casts_are_found(tmp_path, monkeypatch):
    import tempfile

    from coremltools.converters.mil import Builder as mb

    from edgekit.targets.coreml.checks import unexpected_casts

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))])
    def program(x):
        y = mb.relu(x=mb.cast(x=x, dtype="fp16"))  # at the input: expected
        y = mb.relu(x=mb.cast(x=y, dtype="fp32", name="inner"))  # inside the graph: not
        return mb.cast(x=mb.cast(x=y, dtype="fp16", name="round_trip"), dtype="fp32", name="out")  # out: expected

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # coremltools' temp package: not in the system's
    ml = ct.convert(program, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32)
    assert unexpected_casts(ml) == ["inner", "round_trip"]


def test_verify_rebuilds_the_upsample_the_artifact_was_exported_with(tmp_path):
    """`edgekit verify` used to rebuild the default (exact) upsample for every CoreML artifact, so a
    `--upsample bilinear` package was checked against the wrong torch model (and passed)."""
    from edgekit.deploy import Upsample

    m = export(ExportOptions("b0-seg", "coreml", "fp16", "64x128", upsample=Upsample.BILINEAR, output=tmp_path))
    again = verify_artifact(m.artifact_dir)["verification"]
    v = m.verification
    assert again["sqnr_db_min"] == v["sqnr_db_min"] and again["passed"] == v["passed"]
    assert again["checks"]["weights"]["not_found"] == v["checks"]["weights"]["not_found"] == 0
    assert v["sqnr_db_min"] < 40  # bilinear is not the trained function, and the exact form would hide it


def test_a_coreml_export_leaves_nothing_in_the_temp_folder(tmp_path, monkeypatch):
    import tempfile

    temp = tmp_path / "system-temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    m = export(ExportOptions("b0-cls", "coreml", resolution="64", output=tmp_path / "a"))
    assert Path(m.model_path).is_dir() and tempfile.gettempdir() == str(temp)
    assert sorted(p.name for p in temp.iterdir() if p.suffix == ".mlpackage") == []  # coremltools wrote none here
