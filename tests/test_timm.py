"""Weights as most users get them: timm's state dicts (the Hugging Face copies `timm/efficientvit_b0.r224_in1k`,
... are `model.safetensors` in timm's layout), checked against timm's own implementation, the peer
someone else wrote.

timm's models are built with seeded random weights whose outputs depend on their input (BatchNorm
statistics measured on real photos, so every layer is normalised to unit output, and random affine
parameters; with timm's default init the logits of two photos differ by 1e-6), saved as timm saves
them, exported through edgekit, and the artifact and edgekit's PyTorch model compared with timm's
forward on real photos. timm imports torchvision, which cannot be installed here (no wheel matches the
CPU torch; the CUDA one replaces it): tests/stand_ins/torchvision stands in for the names timm's data
and layer code import (its EfficientViT models use none of them).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import error_line
from edgekit.calibration.images import image_batch, stand_in_images
from edgekit.cli import app
from edgekit.export import ExportOptions, export
from edgekit.registry import get_variant
from edgekit.runtime import open_runner

STAND_INS = Path(__file__).parent / "stand_ins"
CASES = {"b0-cls": "efficientvit_b0", "m0-cls": "efficientvit_m0", "l1-cls": "efficientvit_l1"}
runner = CliRunner()


@pytest.fixture(scope="module")
def timm():
    """timm, imported with the torchvision stand-in when the real torchvision is absent; skipped with
    the install line on a developer's machine without timm, a failure under CI (.ci/run installs it)."""
    stand_in = False
    try:
        import torchvision  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(STAND_INS))
        stand_in = True
    try:
        import timm as module
    except ImportError:
        reason = "timm not installed (pip install --no-deps timm==1.0.31: --no-deps keeps torchvision out)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}: CI=true, so this test may not be skipped")
        pytest.skip(reason)
    finally:
        if stand_in:  # timm holds what it imported; nothing else in the session may find the stand-in
            sys.path.remove(str(STAND_INS))
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]
    return module


def _timm_model(timm, name: str, variant) -> torch.nn.Module:
    """timm's model, seeded, its BatchNorm statistics taken from the built-in photos (train-mode
    forward with a cumulative average) and random affine parameters and attention biases."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.momentum = None
                m.reset_running_stats()
            if hasattr(m, "attention_biases"):
                m.attention_biases.copy_(torch.randn(m.attention_biases.shape, generator=g) * 0.5)
        model.train()
        model(torch.from_numpy(image_batch(variant, variant.resolution, stand_in_images())))
    return model.eval()


def _save_as_timm(model: torch.nn.Module, folder: Path, arch: str) -> Path:
    """model.safetensors + config.json, the files timm's push_to_hf_hub writes."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"architecture": arch, "num_classes": 1000,
                                                    "pretrained_cfg": {"tag": "r224_in1k"}}))
    return folder / "model.safetensors"


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def timm_files(timm, tmp_path_factory):
    out = tmp_path_factory.mktemp("timm")
    made = {}

    def get(variant_name: str):
        if variant_name not in made:
            variant = get_variant(variant_name)
            model = _timm_model(timm, CASES[variant_name], variant)
            made[variant_name] = (model, _save_as_timm(model, out / CASES[variant_name], CASES[variant_name]))
        return made[variant_name]

    return get


# l1-cls (53M parameters): 2.5 min of export and timm forward here; the L series is for the slow run
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("l") else n for n in CASES])
def test_a_timm_state_dict_exports_to_timms_outputs(timm_files, name, tmp_path):
    variant = get_variant(name)
    model, file = timm_files(name)
    photos = image_batch(variant, variant.resolution)  # the held-out photos, edgekit's preprocessing
    with torch.no_grad():
        theirs = model(torch.from_numpy(photos)).numpy()
    assert _max_rel(theirs[0], theirs[1]) > 0.05  # the output depends on the photo: the check means something
    m = export(ExportOptions(name, "onnx", weights=file, output=tmp_path))
    assert m.source["layout"] == "timm-mit" if variant.family == "mit" else m.source["layout"] == "timm-msra"
    assert m.source["format"] == "safetensors" and m.source["weights"] == str(file.resolve())
    assert m.verification["passed"], m.verification["failures"]
    ours = open_runner(m).run(photos, theirs.shape)
    assert _max_rel(ours, theirs) <= 1e-4
    from edgekit.reference import run_images, source_model

    torch_model, _ = source_model(variant, variant.resolution, file)
    assert _max_rel(run_images(torch_model, photos), theirs) <= 1e-4


def test_the_default_export_of_a_timm_file_through_the_cli(timm_files, tmp_path):
    """`edgekit export b0-cls --weights model.safetensors`: TFLite, the default target; the Hugging Face
    folder works the same."""
    variant = get_variant("b0-cls")
    model, file = timm_files("b0-cls")
    folder = runner.invoke(app, ["export", "b0-cls", "--weights", str(file.parent), "-t", "onnx", "-o",
                                 str(tmp_path), "--json"])  # the Hugging Face folder (ONNX: the quick target)
    assert folder.exit_code == 0, folder.output
    source = json.loads(folder.stdout)["source"]
    assert source["format"] == "huggingface folder (safetensors)" and source["given"] == str(file.parent)
    assert source["weights"] == str(file.resolve()) and source["layout"] == "timm-mit"
    again = runner.invoke(app, ["export", "b0-cls", "--weights", str(file.parent), "-t", "onnx", "-o",
                                str(tmp_path)])  # the same folder again: the same inputs, replaced
    assert again.exit_code == 0 and "made from the same inputs" in again.stdout, again.output
    r = runner.invoke(app, ["export", "b0-cls", "--weights", str(file), "-o", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["target"] == "tflite" and m["source"]["sha256"] == source["sha256"] and m["source"]["layout"] == "timm-mit"
    from edgekit.manifest import read_manifest

    photos = image_batch(variant, variant.resolution)
    with torch.no_grad():
        theirs = model(torch.from_numpy(photos)).numpy()
    ours = open_runner(read_manifest(Path(m["artifact_dir"]))).run(photos, theirs.shape)
    assert _max_rel(ours, theirs) <= 1e-4
    verify = runner.invoke(app, ["verify", m["artifact_dir"]])
    assert verify.exit_code == 0, verify.output


def test_a_timm_file_for_another_model_is_one_line(timm_files, tmp_path):
    _, b0 = timm_files("b0-cls")
    _, m0 = timm_files("m0-cls")
    cases = [
        (["export", "b1-cls", "--weights", str(b0)], "checkpoint does not fit b1-cls"),
        (["export", "b0-cls", "--weights", str(m0)], "timm's EfficientViT (Microsoft, M series) layout, which cannot "
                                                     "be b0-cls"),
        (["export", "b0-seg", "--weights", str(b0)], "timm has only the classifiers"),
        (["export", "m0-cls", "--weights", str(b0.parent)], "holds b0-cls (its config.json names it), not m0-cls"),
        (["info", "b1-cls", "--weights", str(b0)], "checkpoint does not fit b1-cls"),
    ]
    for args, needle in cases:
        r = runner.invoke(app, [*args, "-o", str(tmp_path / "x")] if args[0] == "export" else args)
        err = error_line(r.stderr)
        assert r.exit_code == 1 and err.startswith("error: ") and "\n" not in err and needle in err, (args, err)
    assert not (tmp_path / "x").exists()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    r = runner.invoke(app, ["info", "b0-cls", "--weights", str(broken)])
    assert r.exit_code == 1 and "is not a readable safetensors file" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["m0-cls", "l1-cls"])
def test_tflite_of_a_timm_file(timm_files, name, tmp_path):
    variant = get_variant(name)
    model, file = timm_files(name)
    photos = image_batch(variant, variant.resolution)
    with torch.no_grad():
        theirs = model(torch.from_numpy(photos)).numpy()
    m = export(ExportOptions(name, "tflite", "fp32", weights=file, output=tmp_path))
    assert _max_rel(open_runner(m).run(photos, theirs.shape), theirs) <= 1e-4
