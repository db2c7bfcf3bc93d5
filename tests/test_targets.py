"""The target table: a new target through its table entry alone, unknown targets and broken
manifests as one-line errors, and verification on held-out photos (never the calibration ones)."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from toy_target import TOY, ToyOptions
from typer.testing import CliRunner

from conftest import error_line
from edgekit import targets
from edgekit.cli import app
from edgekit.devices import htp_socs
from edgekit.errors import EdgekitError
from edgekit.export import ExportOptions, export
from edgekit.targets.base import device_fields, device_option, option

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


# ---- a toy target (tests/toy_target.py), through the table alone ----------------------------------------
@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(targets.TARGETS, "toy", TOY)
    return TOY


def test_a_new_target_through_the_table_alone(toy, tmp_path):
    out = tmp_path / "a"
    m = export(ExportOptions("b0-seg", "toy", resolution="64x128", output=out))
    art = Path(m.artifact_dir)
    assert art.name == "b0-seg-cityscapes-64x128-toy-fp32" and m.model_file == "model.pt"
    assert [r["name"] for r in m.rewrites] == ["fold_batchnorm", "static_attention", "bicubic_exact"]  # its plan
    assert m.target_options == {"noise": 0} and m.target_info == {"traced": True}
    v = m.verification
    assert v["passed"] and v["compared"] == "the artifact, run by torch.jit" and v["sqnr_db_min"] > 60

    # the CLI takes it by name: verify, package (for the platform it declares), profile refuses it
    r = runner.invoke(app, ["verify", str(art), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["package", str(art), "--platform", "android", "-o", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0, r.output
    (record,) = json.loads(r.stdout)
    assert record["snippet"] == "Toy.txt" and "model.pt" in record["files"]
    r = runner.invoke(app, ["package", str(art), "--platform", "ios", "-o", str(tmp_path / "c")])
    assert r.exit_code == 1 and "takes coreml artifacts" in r.stderr
    r = runner.invoke(app, ["profile", str(art), "--results", str(tmp_path / "r.jsonl")])
    assert r.exit_code == 1 and "toy artifacts are not profiled" in r.stderr

    # its option is typed and checked by the table; another target's option is refused
    noisy = export(ExportOptions("b0-seg", "toy", resolution="64x128", target_options={"noise": "50"},
                                 output=tmp_path / "n"))
    assert noisy.target_options == {"noise": 50} and not noisy.verification["passed"]
    assert "SQNR" in noisy.verification["failures"][0]
    r = runner.invoke(app, ["export", "b0-seg", "-t", "toy", "-r", "64x128", "--layout", "nchw", "-o", str(out)])
    assert r.exit_code == 1 and "--layout applies to tflite only, not toy" in r.stderr
    r = runner.invoke(app, ["export", "b0-seg", "-t", "toy", "-p", "int8", "-o", str(out)])
    assert r.exit_code == 1 and "--precision 'int8' is not one of: fp32 (for toy)" in r.stderr


def _toy_with(options_type, name="toy2"):
    return dataclasses.replace(TOY, name=name, options=options_type)


def test_a_flag_means_one_thing_across_the_table():
    """A new target's flag that another target declares differently is refused when it registers; so
    is the shared --device declared as anything but the phones an artifact is built for."""
    @dataclass(frozen=True)
    class OwnDevice:  # an OpenVINO-style --device: CPU, GPU or NPU of this machine
        device: str = option("cpu", "--device", "the compute device to run on", ("cpu", "gpu", "npu"))

    @dataclass(frozen=True)
    class OtherLayout:
        layout: int = option(0, "--layout", "a number", None, int)

    @dataclass(frozen=True)
    class OtherName:  # the same flag on another field would fill the wrong option
        order: str = option("nhwc", "--layout", "input layout: nhwc (camera order) | nchw", ("nhwc", "nchw"))

    before = dict(targets.TARGETS)
    with pytest.raises(EdgekitError, match=r"--device is edgekit's shared option .* another meaning"):
        targets.register(_toy_with(OwnDevice))
    for options in (OtherLayout, OtherName):
        with pytest.raises(EdgekitError, match="declares --layout differently from target tflite"):
            targets.register(_toy_with(options))
    with pytest.raises(EdgekitError, match="already in the table"):
        targets.register(targets.TARGETS["tflite"])
    assert targets.TARGETS == before  # nothing half-registered

    # the shared --device, declared by its helper, and a flag declared exactly as another target does
    @dataclass(frozen=True)
    class Sharing:
        device: tuple = device_option(("s8gen1",), htp_socs(), "phones to build for")
        noise: int = ToyOptions.__dataclass_fields__["noise"]

    try:
        spec = targets.register(_toy_with(Sharing, "toy3"))
        assert device_fields(spec) == ["device"]
    finally:
        targets.unregister("toy3")


def test_a_registered_target_joins_the_conformance_suite():
    """The toy target, registered by a plugin before collection (as a target module registers at
    import), is collected and passes tests/test_conformance.py, which names no target."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "-p", "toy_target", "-q", "-k", "toy", "-p",
                           "no:cacheprovider", str(REPO / "tests" / "test_conformance.py")],
                          cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    assert done.returncode == 0, done.stdout[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert re.match(r"\d+ passed", summary) and "failed" not in summary and "skipped" not in summary, summary
    assert int(summary.split()[0]) >= 6, summary
    assert "toy" not in (REPO / "tests" / "test_conformance.py").read_text()


def test_a_failed_verification_exits_3_and_keeps_the_artifact(toy, tmp_path):
    out = tmp_path / "a"
    # the CLI builds its flags from the table when imported: the toy's --noise is given through the library
    m = export(ExportOptions("b0-seg", "toy", resolution="64x128", target_options={"noise": 50}, output=out))
    r = runner.invoke(app, ["verify", m.artifact_dir])
    assert r.exit_code == 3 and r.stderr.startswith("error: verification failed: SQNR")
    assert "FAIL" in r.stdout and (Path(m.artifact_dir) / "edgekit.json").is_file()
    r = runner.invoke(app, ["package", m.artifact_dir, "--platform", "android", "-o", str(tmp_path / "b")])
    assert r.exit_code == 1 and "FAILED its verification" in r.stderr and "--allow-failed" in r.stderr
    assert not (tmp_path / "b").exists()


def test_generic_code_names_no_target():
    """Only targets/ (and docs and tests) name a target: every generic module asks the table."""
    names = "|".join(re.escape(t) for t in targets.TARGETS)
    quoted = re.compile(rf"""["']({names})["']|Target\.[A-Z]""")
    # ONNX Runtime's perf test names its execution provider "qnn" (-e qnn): a flag value of that
    # program, in its harness entry, not a branch on edgekit's target
    allowed = {("android_harness/harnesses.py", '"-e", "qnn"')}
    found = []
    for folder in ("edgekit", "android_harness", "calibration"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                rel = str(path.relative_to(REPO))
                if quoted.search(code) and not any(rel == f and text in code for f, text in allowed):
                    found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert found == []


# ---- unknown targets and broken manifests: one line, non-zero exit --------------------------------------
def _artifact_copy(b0_fp32, tmp_path: Path, edit) -> Path:
    _, manifest = b0_fp32
    copy = tmp_path / "copy" / Path(manifest.artifact_dir).name
    shutil.copytree(manifest.artifact_dir, copy)
    path = copy / "edgekit.json"
    edited = edit(path.read_text())
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    return copy


def _one_line(args, needle, code=1):
    r = runner.invoke(app, args)
    err = error_line(r.stderr)
    assert r.exit_code == code, r.output
    assert err.startswith("error: ") and needle in err and "\n" not in err and "Traceback" not in err, err


def test_unknown_target_in_a_manifest_fails_every_command(b0_fp32, tmp_path):
    art = _artifact_copy(b0_fp32, tmp_path, lambda text: {**json.loads(text), "target": "bogus"})
    for args in (["verify", str(art)], ["profile", str(art), "--results", str(tmp_path / "r.jsonl")],
                 ["package", str(art), "--platform", "android", "-o", str(tmp_path / "b")]):
        _one_line(args, "names the target 'bogus', which this edgekit does not know")
    assert not (tmp_path / "b").exists() and not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("edit,needle", [
    (lambda text: text[:40], "is not valid JSON"),
    (lambda text: {k: v for k, v in json.loads(text).items() if k != "sha256"}, "is missing the key 'sha256'"),
    (lambda text: {k: v for k, v in json.loads(text).items() if k != "schema"}, "has no schema version"),
    (lambda text: {**json.loads(text), "schema": 99}, "has schema 99; this edgekit reads schema 2"),
    (lambda text: {**json.loads(text), "resolution": "128x256"}, "'resolution' should be list, not str"),
    (lambda text: "[1, 2]", "is not an edgekit manifest"),
])
def test_broken_manifests_are_one_line_errors(b0_fp32, tmp_path, edit, needle):
    art = _artifact_copy(b0_fp32, tmp_path, edit)
    _one_line(["verify", str(art)], needle)
    _one_line(["verify", str(art)], "edgekit.json")  # names the file


# ---- held-out verification ------------------------------------------------------------------------------
def test_verify_on_the_users_own_photos_per_image(b0_fp32, tmp_path):
    _, manifest = b0_fp32
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("mit-fig-5.jpeg", "bear.jpeg"):
        shutil.copy(REPO / "calibration" / "images" / name, photos / name)
    r = runner.invoke(app, ["verify", manifest.artifact_dir, "--verify-images", str(photos), "--json"])
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)["verification"]
    assert v["image_set"] == str(photos) and [i["name"] for i in v["images"]] == ["bear.jpeg", "mit-fig-5.jpeg"]
    assert all(i["sqnr_db"] > 90 and i["agreement"] == 1.0 for i in v["images"])
    assert v["sqnr_db_min"] == min(i["sqnr_db"] for i in v["images"])


def test_a_calibration_photo_is_refused_for_verification(tmp_path):
    """An int8 artifact calibrated on the built-in calibration photos: verifying it on one of them is
    refused unless allowed, and then the report says so."""
    m = export(ExportOptions("b0-seg", "tflite", "int8", "64x128", target_options={"keep_float": 0},
                             num_calibration=2, output=tmp_path / "a"))
    assert [i["name"] for i in m.calibration["images"]] == ["city.png", "indoor.jpg"]
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(REPO / "calibration" / "images" / "city.png", photos / "renamed.png")  # same photo, other name
    shutil.copy(REPO / "calibration" / "images" / "mit-fig-7.jpeg", photos / "mit-fig-7.jpeg")
    _one_line(["verify", m.artifact_dir, "--verify-images", str(photos)], "renamed.png was used for calibration")
    r = runner.invoke(app, ["verify", m.artifact_dir, "--verify-images", str(photos), "--allow-calibration-images",
                            "--json"])
    assert r.exit_code in (0, 3), r.output
    v = json.loads(r.stdout)["verification"]
    assert v["calibration_overlap"] == ["renamed.png"] and len(v["images"]) == 2
    # a user's calibration folder that holds a built-in verification photo is refused at export, before any work
    calib = tmp_path / "calib"
    calib.mkdir()
    shutil.copy(REPO / "calibration" / "images" / "mit-fig-1.jpeg", calib / "street.jpeg")
    _one_line(["export", "b0-seg", "-p", "int8", "-r", "64x128", "--calibration", str(calib), "-o",
               str(tmp_path / "b")], "mit-fig-1.jpeg was used for calibration")
    assert not (tmp_path / "b").exists()


def test_debug_shows_the_converters_captured_log(tmp_path, monkeypatch):
    import onnx2tf

    def failing(**kwargs):
        print("onnx2tf says: something about a Transpose")
        raise SystemExit(1)

    monkeypatch.setattr(onnx2tf, "convert", failing)
    args = ["export", "b0-seg", "-r", "64x128", "-o", str(tmp_path)]
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "rerun with --debug for its log" in r.stderr and "Transpose" not in r.stderr
    r = runner.invoke(app, ["--debug", *args])
    assert "onnx2tf says: something about a Transpose" in r.stderr
    assert type(r.exception).__name__ == "EdgekitError"


def test_targets_command_lists_the_table():
    r = runner.invoke(app, ["targets", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["target"]: row for row in json.loads(r.stdout)}
    assert set(rows) == set(targets.TARGETS)
    assert rows["tflite"]["options"] == ["--layout", "--io", "--keep-float", "--int8-goal",
                                             "--search-budget", "--equalize", "--bias-correction"] and rows["tflite"]["profiler"] == "benchmark_model"
    assert rows["executorch"]["options"] == ["--keep-float", "--int8-goal", "--search-budget"]  # the same helpers
    assert rows["coreml"]["options"] == ["--ios", "--input", "--keep-float", "--int8-goal", "--search-budget"]
    assert rows["coreml"]["platform"] == "ios" and rows["onnx"]["platform"] == "android"
    assert rows["onnx"]["profiler"] == rows["qnn"]["profiler"] == "onnxruntime_perf_test"  # one program, two EPs
    assert rows["onnx"]["delegates"] == ["cpu"] and rows["qnn"]["delegates"] == ["npu"]
