"""The eval tests' labelled sets: edgekit.demo_data's builders, and the checks several tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.demo_data import OBJECTS, SCENES, ade20k, cityscapes, imagenet  # noqa: F401 - the tests' builders


def check_m0_eval(manifest, tmp_path: Path) -> None:
    """`edgekit eval` of an m0-cls artifact on an ImageNet-layout set: the shape of its JSON, top-1 a
    direct count of the saved predictions, the delta and its interval, PyTorch alone the same."""
    import json

    from typer.testing import CliRunner

    from edgekit.cli import app
    from edgekit.targets import get_target

    runner = CliRunner()
    data = tmp_path / "imagenet"
    truth = imagenet(data)

    def run(*args) -> dict:
        result = runner.invoke(app, ["eval", *map(str, args), "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    r = run(manifest.artifact_dir, "--data", data, "--save-predictions", tmp_path / "pred")
    keys = {"task", "dataset", "images", "metric", "artifact", "pytorch", "delta", "delta_ci95", "runner"}
    assert keys <= set(r) and r["target"] == manifest.target and r["precision"] == manifest.precision
    assert get_target(manifest.target).runner_label in r["runner"]
    rows = [line.split() for line in (tmp_path / "pred" / "predictions.txt").read_text().splitlines()]
    assert abs(r["artifact"]["value"] - np.mean([int(x[1]) == truth[x[0]] for x in rows])) < 1e-12
    assert abs(r["delta"] - (r["artifact"]["value"] - r["pytorch"]["value"])) < 1e-12
    lo, hi = r["delta_ci95"]
    assert lo <= r["delta"] <= hi
    assert run("m0-cls", "--data", data)["pytorch"] == r["pytorch"]  # the same model, fed the same tensors
