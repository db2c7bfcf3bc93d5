"""Every target in the table, held to what its entry declares: registering a target is enough to get
these tests (timm's tests/test_models.py does the same over list_models()).

For each target, one small real export (b0-seg at 64x128, the target's default precision) and then,
through the CLI a user types: the artifact reloaded with the host runner, verification, predict,
package (for the platform it declares, refused for the other) and profile on this machine (by its
harness's host stand-in, or refused in one line with the reason the table gives). The module names
no target: tests/test_targets.py runs it with one more registered by a pytest plugin.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import error_line
from edgekit.cli import app
from edgekit.deploy import plan_rewrites
from edgekit.manifest import read_manifest
from edgekit.metrics import compare
from edgekit.targets import TARGETS
from edgekit.targets.base import NotRunnable, options_dict

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
VARIANT, SIZE = "b0-seg", (64, 128)
PHOTO = REPO / "calibration" / "images" / "mit-fig-5.jpeg"  # a held-out photo


@pytest.fixture(scope="module", params=list(TARGETS), ids=list(TARGETS))
def exported(request, tmp_path_factory, shared_artifact):
    """(spec, the target's export of b0-seg at 64x128 in its default precision, a folder for outputs)."""
    spec = TARGETS[request.param]
    out = tmp_path_factory.mktemp(f"conformance-{spec.name}")
    return spec, shared_artifact(VARIANT, spec.name, None, f"{SIZE[0]}x{SIZE[1]}"), out


def _one_line_error(result, needle: str, code: int = 1) -> None:
    err = error_line(result.stderr)
    assert result.exit_code == code, result.output
    assert err.startswith("error: ") and needle in err and "\n" not in err, err


def test_the_artifact_is_what_the_table_declares(exported):
    spec, m, _ = exported
    assert m.target == spec.name and m.precision == spec.default_precision
    assert Path(m.model_path).name == spec.model_file and Path(m.model_path).exists()
    assert [r["name"] for r in m.rewrites] == plan_rewrites(spec.plan, m.precision, None, spec.name)
    assert m.target_options == options_dict(spec.options())
    assert set(spec.tools) <= set(m.tools)
    v = m.verification
    assert v["passed"], v["failures"]
    for key, bar in spec.tolerance(m.precision).as_dict().items():  # the declared bars (fp32's max_rel may rise
        assert v["tolerance"]["max_rel_base" if key == "max_rel" else key] == bar  # to PyTorch's own noise)
    if v["artifact_run"]:
        assert v["compared"] == f"the artifact, run by {spec.runner_label}"
    else:  # only a target that declares a proxy may compare something other than its artifact
        assert spec.proxy is not None and v["compared"].startswith(("the torch model that was converted",
                                                                    "the calibrated torch model that was converted"))
    assert bool(v.get("checks")) == (spec.checks is not None)  # its own checks ran, exactly where declared
    if spec.checks is not None:
        assert v["checks"]["passed"]
        assert spec.check_lines is None or all(isinstance(line, str) for line in spec.check_lines(v["checks"]))


def test_the_host_runner_reloads_the_artifact(exported):
    """Reloaded with the table's host runner, the artifact gives again the SQNR its export measured
    on the same held-out photo."""
    from edgekit.calibration.images import load_rgb, preprocess
    from edgekit.reference import run_images, source_model
    from edgekit.registry import get_variant
    from edgekit.runtime import open_runner

    spec, m, _ = exported
    m = read_manifest(m.artifact_dir)
    variant = get_variant(m.variant)
    x = preprocess(load_rgb(PHOTO), variant, m.size)[None]
    expected_shape = (1, variant.num_classes, *(s // variant.output_stride for s in m.size))
    try:
        host = open_runner(m)
    except NotRunnable as e:
        assert spec.proxy is not None, "a target whose artifact cannot run here must declare its proxy"
        assert m.verification["not_run"] == str(e)
        return
    out = host.run(x, expected_shape)
    assert out.shape == expected_shape and out.dtype == np.float32 and np.isfinite(out).all()
    reference = run_images(source_model(variant, m.size, None)[0], x)
    again = compare(reference, out, variant.task)["sqnr_db_min"]
    (at_export,) = [i["sqnr_db"] for i in m.verification["images"] if i["name"] == PHOTO.name]
    assert again == pytest.approx(at_export, abs=0.1) or min(again, at_export) > 100


def test_verify_reruns_through_the_cli(exported):
    spec, m, _ = exported
    r = runner.invoke(app, ["verify", m.artifact_dir, "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["target"] == spec.name and result["verification"]["passed"]
    r = runner.invoke(app, ["verify", m.artifact_dir])
    assert r.exit_code == 0 and "pass" in r.stdout


def test_predict_runs_where_the_host_runner_does(exported):
    spec, m, out = exported
    args = ["predict", m.artifact_dir, str(PHOTO), "-o", str(out / "predictions"), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["target"] == spec.name
    if m.verification["artifact_run"]:
        assert result["runner"] == spec.runner_label and not result["proxy"]
    else:  # the host cannot run it: the table's proxy ran, and the result says so
        assert result["proxy"] and m.verification["not_run"] in result["runner"]
    (prediction,) = result["predictions"]
    assert all(Path(f).is_file() for f in prediction["files"].values()) and prediction["classes"]
    assert prediction["image"] == str(PHOTO)


def test_package_for_its_platform_only(exported):
    spec, m, out = exported
    platforms = {s.packaging.platform for s in TARGETS.values() if s.packaging}
    for platform in sorted(platforms):
        folder = out / f"bundles-{platform}"
        r = runner.invoke(app, ["package", m.artifact_dir, "--platform", platform, "-o", str(folder), "--json"])
        if spec.packaging is not None and spec.packaging.platform == platform:
            assert r.exit_code == 0, r.output
            (record,) = json.loads(r.stdout)
            assert record["target"] == spec.name and spec.model_file in record["files"]
            assert Path(record["zip"]).is_file()
        else:
            _one_line_error(r, f"--platform {platform} takes")
            assert not folder.exists()


def test_profile_on_this_machine_as_its_harness_declares(exported):
    spec, m, out = exported
    results = out / "results.jsonl"
    r = runner.invoke(app, ["profile", m.artifact_dir, "--device", "host", "--runs", "2", "--warmup", "0",
                            "--results", str(results), "--json"])
    harness = spec.harness
    if harness is None:
        _one_line_error(r, spec.not_profiled)
    elif harness.host_module is None:
        _one_line_error(r, harness.no_host)
    else:
        assert r.exit_code == 0, r.output
        (record,) = json.loads(r.stdout)
        assert record["harness"] == harness.name and record["delegate"] == harness.delegates[0]
        assert record["target"] == spec.name and record["median_ms"] > 0 and record["sha256"] == m.sha256
        assert [json.loads(line)["sha256"] for line in results.read_text().splitlines()] == [m.sha256]
        return
    assert not results.exists()


def test_eval_scores_the_artifact_against_pytorch(exported):
    """The task metric on a small Cityscapes-layout set: the artifact through its host runner (or
    the table's proxy, said so), PyTorch on the same images, the paired difference."""
    import eval_data

    spec, m, out = exported
    data = out / "cityscapes"
    if not data.exists():
        eval_data.cityscapes(data, names=eval_data.SCENES[:2], model_size=SIZE)
    r = runner.invoke(app, ["eval", m.artifact_dir, "--data", str(data), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["target"] == spec.name and result["images"] == 2 and result["metric"] == "mIoU"
    assert result["delta"] == pytest.approx(result["artifact"]["value"] - result["pytorch"]["value"], abs=1e-12)
    lo, hi = result["delta_ci95"]
    assert lo <= result["delta"] <= hi
    if m.verification["artifact_run"]:
        assert spec.runner_label in result["runner"] and result["proxy"] is None
    else:
        assert result["proxy"] == m.verification["not_run"] and "did not run" in result["runner"]


def test_debug_matches_the_artifact_to_pytorch_layer_by_layer(exported):
    """The artifact's intermediate tensors (or, where the host cannot run it, its proxy's, said so) matched to
    PyTorch's module outputs: most of the graph, in order, ending at the model's output, whose figure is the
    one verification measured."""
    spec, m, out = exported
    r = runner.invoke(app, ["debug", m.artifact_dir, "--picture", str(out / "debug.png"), "--json"])
    if spec.taps is None:  # a target that declares no way to its tensors is refused in one line
        _one_line_error(r, "expose no intermediate tensors")
        assert not (out / "debug.png").exists()
        return
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["target"] == spec.name and (out / "debug.png").is_file()
    rows = result["rows"]
    assert len(rows) >= 60, len(rows)  # b0-seg has ~100 module outputs; attention internals may stay unmatched
    assert ("did not run" in result["ran"]) == (not m.verification["artifact_run"])
    last = rows[-1]
    assert last["module"] == "head.output_ops.0.op_list.1.conv" and last["shape"][2:] == [s // 8 for s in SIZE]
    assert last["sqnr_db_min"] == pytest.approx(m.verification["sqnr_db_min"], abs=3) or \
        min(last["sqnr_db_min"], m.verification["sqnr_db_min"]) > 60
