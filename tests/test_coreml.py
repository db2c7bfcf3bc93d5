"""CoreML on Linux: real coremltools conversions, structure checked, numerics honestly 'needs macOS'."""

import json

import coremltools as ct
import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.deploy import Target
from edgekit.export import ExportOptions, export

runner = CliRunner()


def test_b0_seg_fp16_image_input(tmp_path):
    m = export(ExportOptions("b0-seg", Target.COREML, "fp16", "128x256", output=tmp_path))
    art = tmp_path / "b0-seg-cityscapes-128x256-coreml-fp16"
    assert sorted(p.name for p in art.iterdir()) == ["edgekit.json", "labels.txt", "model.mlpackage"]
    assert m["io"]["input"] == {"name": "image", "shape": [1, 3, 128, 256], "layout": "NCHW",
                                "dtype": "image RGB (CVPixelBuffer)"}
    assert [r["name"] for r in m["rewrites"]] == ["fold_batchnorm", "static_attention", "fp16_safe_attention",
                                                  "bicubic_exact"]
    assert "upsample_nearest_neighbor" in m["ops"] and "conv" in m["ops"]
    assert not any("bicubic" in op or "resize_bicubic" in op for op in m["ops"])
    v = m["verification"]
    assert v["structure"]["loads"] and v["structure"]["io_matches"] and v["passed"]
    assert v["numerics"] == "not run: CoreML prediction needs macOS"  # never a pass it did not earn
    spec = ct.models.MLModel(str(art / "model.mlpackage"), skip_model_load=True)
    meta = spec.user_defined_metadata
    assert meta["variant"] == "b0-seg-cityscapes" and meta["resolution"] == "128x256"
    assert spec.get_spec().specificationVersion >= 7  # iOS 16 mlprogram
    assert json.loads((art / "edgekit.json").read_text())["coreml"] == {"ios": 16, "input": "image"}


def test_m0_cls_int8_weights_is_a_classifier(tmp_path):
    m = export(ExportOptions("m0-cls", Target.COREML, "int8-weights", output=tmp_path))
    assert [o["name"] for o in m["io"]["output"]] == ["classLabel", "classLabel_probs"]
    assert m["ops"].get("constexpr_affine_dequantize", 0) > 0  # weights stored as int8
    assert m["verification"]["passed"]
    spec = ct.models.MLModel(str(tmp_path / "m0-cls-224x224-coreml-int8-weights" / "model.mlpackage"),
                             skip_model_load=True).get_spec()
    assert spec.description.predictedFeatureName == "classLabel"


def test_tensor_input(tmp_path):
    m = export(ExportOptions("b0-seg", Target.COREML, "fp32", "64x128", input_kind="tensor", output=tmp_path))
    assert m["io"]["input"]["dtype"] == "float32 tensor, normalised"
    assert "fp16_safe_attention" not in [r["name"] for r in m["rewrites"]]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["-p", "int8"], "from iOS 17: add --ios 17"),
        (["-p", "int8", "--ios", "17"], "not implemented yet"),
        (["--ios", "15"], "--ios 15 is not one of"),
        (["--input", "video"], "--input 'video' is not one of"),
        (["--layout", "nchw"], "--layout applies to TFLite only"),
    ],
)
def test_coreml_bad_input(tmp_path, args, needle):
    result = runner.invoke(app, ["export", "m0-cls", "--target", "coreml", *args, "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and needle in result.stderr and "\n" not in result.stderr.strip()
    assert not (tmp_path / "o").exists()
