"""`edgekit eval`: the task metric on labelled sets in their real layouts, checked against the peers'
definitions: cityscapesScripts' own evaluator (Cityscapes mIoU and per-class IoU), the SceneParsing
definition (ADE20K), a direct count (ImageNet top-1/top-5), on the predictions edgekit saved in each
set's submission format. Sets are built from the shipped photos (tests/eval_data.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import eval_data
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import error_line
from edgekit.accuracy import Scores, paired_bootstrap
from edgekit.cli import app
from edgekit.export import ExportOptions, export
from edgekit.manifest import read_manifest

runner = CliRunner()
KEYS = {"task", "dataset", "images", "metric", "artifact", "pytorch", "delta", "delta_ci95", "runner"}


def _eval(*args, code: int = 0) -> dict:
    result = runner.invoke(app, ["eval", *map(str, args), "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def _one_line_error(args, needle: str) -> str:
    result = runner.invoke(app, ["eval", *map(str, args)])
    err = error_line(result.stderr)
    assert result.exit_code != 0 and err.startswith("error: ") and "\n" not in err, result.output
    assert needle in err, err
    return err


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    eval_data.cityscapes(root)
    return root


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("imagenet")
    return root, eval_data.imagenet(root)


def _cityscapes_scripts(predictions: Path, data: Path) -> dict:
    """cityscapesScripts' own pixel-level evaluator on edgekit's saved predictions."""
    if not hasattr(np, "in1d"):  # cityscapesscripts 2.3.0 calls np.in1d, which numpy 2.4 removed
        np.in1d = np.isin
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as css

    gts = sorted(str(p) for p in (data / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    preds = [str(predictions / Path(g).parent.name / Path(g).name.replace("_gtFine_labelIds", "_leftImg8bit"))
             for g in gts]
    css.args.evalInstLevelScore, css.args.JSONOutput, css.args.quiet = False, False, True
    return css.evaluateImgLists(preds, gts, css.args)


def test_cityscapes_miou_is_cityscapesscripts_miou(cityscapes, tmp_path):
    r = _eval("b0-seg", "--data", cityscapes, "--resolution", "64x128", "--save-predictions", tmp_path / "pred")
    assert KEYS <= set(r) and r["task"] == "seg" and r["dataset"] == "cityscapes" and r["metric"] == "mIoU"
    assert r["images"] == 4 and r["artifact"] is None and r["delta"] is None and r["random_weights"]
    peer = _cityscapes_scripts(tmp_path / "pred", cityscapes)
    assert abs(r["pytorch"]["value"] - peer["averageScoreClasses"]) <= 1e-6
    assert 0.2 < r["pytorch"]["value"] < 0.95  # the labels are the model's predictions with noise: far from trivial
    for name, iou in r["pytorch"]["per_class"].items():
        theirs = peer["classScores"][name]
        assert (iou is None and math.isnan(theirs)) or abs(iou - theirs) <= 1e-6, name


def test_label_train_ids_score_as_label_ids(cityscapes, tmp_path):
    """The labelTrainIds files cityscapesScripts' createTrainIdLabelImgs writes give the same scores."""
    from cityscapesscripts.helpers.labels import id2label

    lut = np.array([id2label[i].trainId if i in id2label else 255 for i in range(256)], dtype=np.int64)
    lut[lut < 0] = 255
    root = tmp_path / "cs"
    for p in (cityscapes / "leftImg8bit").rglob("*.png"):
        (root / p.relative_to(cityscapes)).parent.mkdir(parents=True, exist_ok=True)
        (root / p.relative_to(cityscapes)).write_bytes(p.read_bytes())
    for p in (cityscapes / "gtFine").rglob("*_labelIds.png"):
        out = root / p.relative_to(cityscapes).parent / p.name.replace("_labelIds", "_labelTrainIds")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(lut[np.asarray(Image.open(p))].astype(np.uint8), mode="L").save(out)
    a = _eval("b0-seg", "--data", cityscapes, "-r", "64x128")
    b = _eval("b0-seg", "--data", root, "-r", "64x128")
    assert "labelTrainIds" in b["labels"] and a["pytorch"] == b["pytorch"]


def test_ade20k_miou_is_the_sceneparsing_definition(tmp_path):
    eval_data.ade20k(tmp_path / "ade")
    r = _eval("b1-seg-ade20k", "--data", tmp_path / "ade", "-r", "64", "--save-predictions", tmp_path / "pred")
    assert r["dataset"] == "ade20k" and r["images"] == 4
    inter, union = np.zeros(151), np.zeros(151)
    for lab_file in sorted((tmp_path / "ade" / "annotations" / "validation").glob("*.png")):
        lab = np.asarray(Image.open(lab_file)).astype(np.int64)
        pred = np.asarray(Image.open(tmp_path / "pred" / lab_file.name)).astype(np.int64) * (lab > 0)
        i = np.histogram(pred * (pred == lab), bins=150, range=(1, 151))[0]
        p = np.histogram(pred, bins=150, range=(1, 151))[0]
        t = np.histogram(lab, bins=150, range=(1, 151))[0]
        inter[1:] += i
        union[1:] += p + t - i
    present = union[1:] > 0
    iou = inter[1:][present] / union[1:][present]
    assert abs(r["pytorch"]["value"] - iou.mean()) <= 1e-6
    ours = [v for v in r["pytorch"]["per_class"].values() if v is not None]
    assert np.allclose(ours, iou, atol=1e-9) and len(ours) == present.sum() < 150


@pytest.mark.parametrize("layout", ["folders", "flat"])
def test_imagenet_top1_top5_are_a_direct_count(tmp_path, layout):
    truth = eval_data.imagenet(tmp_path / "in", layout=layout)
    r = _eval("m0-cls", "--data", tmp_path / "in", "--save-predictions", tmp_path / "pred")
    rows = [line.split() for line in (tmp_path / "pred" / "predictions.txt").read_text().splitlines()]
    assert [row[0] for row in rows] == sorted(truth) if layout == "folders" else [row[0] for row in rows] == list(truth)
    top1 = np.mean([int(row[1]) == truth[row[0]] for row in rows])
    top5 = np.mean([truth[row[0]] in map(int, row[1:6]) for row in rows])
    assert r["metric"] == "top-1" and r["pytorch"]["value"] == pytest.approx(top1, abs=1e-12)
    assert r["secondary"] == {"metric": "top-5", "artifact": None, "pytorch": pytest.approx(top5, abs=1e-12)}
    assert r["pytorch"]["per_class"] is None


def test_paired_bootstrap():
    rng = np.random.default_rng(3)
    a = Scores("cls", np.stack([rng.random(200) < 0.7, np.ones(200)], 1).astype(np.int64))
    same = paired_bootstrap(a, a)
    assert same == (0.0, 0.0)
    worse = a.per_image.copy()
    worse[:20, 0] = 0  # 20 images lose their top-1 hit (some were misses already)
    b = Scores("cls", worse)
    lo, hi = paired_bootstrap(b, a)
    delta = b.value() - a.value()
    assert lo <= delta <= hi < 0 and paired_bootstrap(b, a) == (lo, hi)  # seeded
    q = -delta  # the share of images whose hit was lost: the paired difference is -1 there, 0 elsewhere
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(q * (1 - q) / 200), rel=0.25)  # the normal interval


# m0-cls's TFLite and ExecuTorch evals sit beside their exports (tests/test_export.py,
# tests/test_executorch.py), which share the artifact: with the suite on two workers, a file's tests stay
# on one, and an m0-cls TFLite export costs 1.5-2 minutes here
@pytest.mark.parametrize("target", ["onnx", pytest.param("qnn", marks=pytest.mark.slow)])
def test_eval_runs_m0_artifacts(shared_artifact, target, tmp_path):
    eval_data.check_m0_eval(shared_artifact("m0-cls", target), tmp_path)


def test_pytorch_scores_are_cached_per_model_and_data(tmp_path, cityscapes):
    out = tmp_path / "a"
    fp32 = export(ExportOptions("b0-seg", "tflite", "fp32", "64x128", output=out))
    fp16 = export(ExportOptions("b0-seg", "tflite", "fp16", "64x128", output=out))
    first = _eval(fp32.artifact_dir, "--data", cityscapes)
    second = _eval(fp16.artifact_dir, "--data", cityscapes)
    assert not first["pytorch_cached"] and second["pytorch_cached"] and first["pytorch"] == second["pytorch"]
    assert _eval(fp16.artifact_dir, "--data", cityscapes, "--limit", "2")["pytorch_cached"] is False  # other images
    assert [p.suffix for p in (out / ".edgekit-cache").iterdir()] == [".npz", ".npz"]


def test_export_eval_data_max_drop(tmp_path):
    """Labels that are exactly PyTorch's predictions: PyTorch scores 1.0, so any pixel the fp16 artifact
    changes is a loss; --max-drop 0 fails it like a verification failure (kept, FAILED, exit 3)."""
    data = tmp_path / "cs"
    eval_data.cityscapes(data, noise=0.0, names=eval_data.SCENES[:2])
    base = ["export", "b0-seg", "-r", "64x128", "-p", "fp16", "--eval-data", str(data), "-o", str(tmp_path / "a")]
    result = runner.invoke(app, [*base, "--max-drop", "0"])
    assert result.exit_code == 3, result.output
    m = read_manifest(Path(tmp_path / "a" / "b0-seg-cityscapes-64x128-tflite-fp16"))
    ev = m.evaluation
    assert ev["pytorch"]["value"] > 0.999 and ev["delta"] < 0 and ev["max_drop"] == 0
    assert not m.verification["passed"] and any(f.startswith("task metric: mIoU") for f in m.verification["failures"])
    assert "more than the --max-drop 0" in result.stderr
    result = runner.invoke(app, [*base, "--max-drop", "100", "--overwrite", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["evaluation"]["failure"] is None


def test_bad_sets_are_one_line_errors_and_write_nothing(tmp_path, cityscapes):
    (tmp_path / "empty").mkdir()
    _one_line_error(["b0-seg", "--data", tmp_path / "empty"], "no dataset layout found")
    _one_line_error(["b0-seg", "--data", tmp_path / "nowhere"], "not found")
    half = tmp_path / "half"
    (half / "leftImg8bit" / "val" / "x").mkdir(parents=True)
    _one_line_error(["b0-seg", "--data", half], "no <city>/*_leftImg8bit.png")
    partial = tmp_path / "partial"
    labels = eval_data.cityscapes(partial, names=eval_data.SCENES[:2])
    labels[1].unlink()
    _one_line_error(["b0-seg", "--data", partial], f"1 of 2 images have no label: {labels[1].relative_to(partial)}")
    wrong = tmp_path / "wrong"
    labels = eval_data.cityscapes(wrong, names=eval_data.SCENES[:2])
    Image.open(labels[0]).resize((100, 50)).save(labels[0])
    _one_line_error(["b0-seg", "--data", wrong, "-r", "64x128", "--save-predictions", tmp_path / "p"],
                    "label is 100x50, its image 256x128")
    corrupt = tmp_path / "corrupt"
    eval_data.cityscapes(corrupt, names=eval_data.SCENES[:2])
    image = sorted((corrupt / "leftImg8bit").rglob("*.png"))[1]
    image.write_bytes(b"not a png")  # found before any work
    _one_line_error(["b0-seg", "--data", corrupt, "-r", "64x128"], f"cannot read image {image}")
    truncated = tmp_path / "truncated"
    eval_data.cityscapes(truncated, names=eval_data.SCENES[:2])
    image = sorted((truncated / "leftImg8bit").rglob("*.png"))[1]
    image.write_bytes(image.read_bytes()[:2000])  # a valid header, cut pixels: found when decoded, mid-run
    result = runner.invoke(app, ["eval", "b0-seg", "--data", str(truncated), "-r", "64x128",
                                 "--save-predictions", str(tmp_path / "p")])
    last = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 1 and last.startswith(f"error: cannot read image {image}"), result.stderr
    assert "Traceback" not in result.stderr
    _one_line_error(["m0-cls", "--data", cityscapes], "m0-cls predicts imagenet classes")
    (tmp_path / "p2").mkdir()
    _one_line_error(["b0-seg", "--data", cityscapes, "--save-predictions", tmp_path / "p2"], "exists")
    assert not (tmp_path / "p").exists() and not list(tmp_path.glob(".p.*"))  # nothing half-written
    result = runner.invoke(app, ["export", "b0-seg", "--max-drop", "1", "-o", str(tmp_path / "x")])
    assert result.exit_code == 1 and "--max-drop needs --eval-data" in result.stderr
    assert not (tmp_path / "x").exists()


def test_sweep_has_a_metric_column_for_the_variants_of_the_set(tmp_path, cityscapes, imagenet):
    out = tmp_path / "sweep"
    args = ["sweep", "--variants", "b0-seg,m0-cls", "--resolutions", "64x128", "--runs", "1", "--warmup", "0",
            "-o", str(out), "--eval-data", str(cityscapes)]
    result = runner.invoke(app, [*args[:2], "b0-seg", *args[3:], "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    alone = _eval(row["artifact"], "--data", cityscapes)
    assert row["metric"] == "mIoU" and row["metric_value"] == alone["artifact"]["value"]
    assert row["metric_delta"] == alone["delta"] and row["metric_ci95"] == alone["delta_ci95"]
    assert read_manifest(Path(row["artifact"])).evaluation["fingerprint"] == alone["fingerprint"]  # the export's
    table = runner.invoke(app, [*args[:2], "b0-seg", *args[3:]])
    assert table.exit_code == 0 and "mIoU (delta)" in table.stdout
    wrong = runner.invoke(app, [*args[:-1], str(imagenet[0]), "--variants", "b0-seg"])
    assert wrong.exit_code == 1 and "holds imagenet data; none of --variants predicts imagenet" in wrong.stderr


def test_an_interrupted_eval_leaves_no_file(tmp_path, cityscapes, monkeypatch):
    """Ctrl-C on the second image: no cache entry and no predictions folder (nor its temporary)."""
    import edgekit.datasets
    from edgekit.eval import EvalOptions, evaluate

    m = export(ExportOptions("b0-seg", "onnx", "fp32", "64x128", output=tmp_path / "a"))
    real, calls = edgekit.datasets.eval_input, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(edgekit.datasets, "eval_input", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate(EvalOptions(m.artifact_dir, cityscapes, save_predictions=tmp_path / "pred"))
    assert not (tmp_path / "a" / ".edgekit-cache").exists() or not any((tmp_path / "a" / ".edgekit-cache").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    monkeypatch.undo()
    done = evaluate(EvalOptions(m.artifact_dir, cityscapes, save_predictions=tmp_path / "pred"))
    assert not done["pytorch_cached"] and len(list((tmp_path / "pred").rglob("*.png"))) == 4


def test_a_variant_alone_and_a_layout_it_does_not_predict_are_said_plainly(cityscapes, imagenet):
    """A variant scored alone has no conversion to measure, and a set of another dataset is named by
    its layout."""
    result = _eval("b0-seg", "--data", str(cityscapes), "-r", "64x128")
    assert result["note"] == "no checkpoint was given, so the metric means nothing (the classes are random)"
    err = _one_line_error(["b0-seg", "--data", str(imagenet[0]), "-r", "64x128"], "predicts cityscapes classes")
    assert "is in imagenet's layout" in err


@pytest.mark.parametrize("fmt,variant", [("cityscapes", "b0-seg"), ("ade20k", "b1-seg-ade20k"), ("imagenet", "m0-cls")])
def test_demo_data_makes_a_set_eval_reads_and_says_it_is_a_demo(tmp_path, fmt, variant):
    """The README's eval example runs on a set one documented command makes: each layout, read back by
    eval's own layout detection, marked a demo in its folder."""
    folder = tmp_path / "demo"
    r = runner.invoke(app, ["demo-data", str(folder), "--format", fmt])
    assert r.exit_code == 0, r.output
    assert "DEMO" in r.stdout and "not human annotations" in (folder / "README.txt").read_text()
    result = _eval(variant, "-d", folder, "-r", "64x64" if fmt != "cityscapes" else "64x128")
    assert result["dataset"] == fmt and result["images"] >= 4
    again = runner.invoke(app, ["demo-data", str(folder)])
    assert again.exit_code == 1 and "exists" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # nothing half-written beside it
