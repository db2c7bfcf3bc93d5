"""`edgekit predict`: what it takes (files, folders, globs), the pictures and classes it writes, and
what it refuses, each in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import REPO, one_line_error
from edgekit.cli import app
from edgekit.export import ExportOptions, export

runner = CliRunner()


IMAGES = REPO / "calibration" / "images"


def test_predict_takes_files_folders_and_globs(onnx_b0, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("mit-fig-5.jpeg", "mit-fig-6.jpeg"):
        shutil.copy(IMAGES / name, photos / name)
    Image.open(IMAGES / "city.png").convert("RGB").save(photos / "street.webp")  # a format a file alone is read in
    (photos / "notes.txt").write_text("not a photo")
    out = str(tmp_path / "p")
    for given, expected in (([str(photos)], ["mit-fig-5.jpeg", "mit-fig-6.jpeg", "street.webp"]),
                            ([str(photos / "*-6.jpeg"), str(IMAGES / "city.png")], ["mit-fig-6.jpeg", "city.png"]),
                            ([str(photos / "mit-fig-5.jpeg"), str(photos)], ["mit-fig-5.jpeg", "mit-fig-6.jpeg",
                                                                            "street.webp"])):
        r = runner.invoke(app, ["predict", onnx_b0.artifact_dir, *given, "-o", out, "--json"])
        assert r.exit_code == 0, r.output
        assert [Path(p["image"]).name for p in json.loads(r.stdout)["predictions"]] == expected
    one_line_error(runner.invoke(app, ["predict", onnx_b0.artifact_dir, str(photos / "*.gif"), "-o", out]),
              "no .jpg/.jpeg/.png/.webp/.bmp/.tif/.tiff images match")
    one_line_error(runner.invoke(app, ["predict", onnx_b0.artifact_dir, str(tmp_path / "missing.jpg"), "-o", out]),
              "missing.jpg not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(runner.invoke(app, ["predict", onnx_b0.artifact_dir, str(empty), "-o", out]), "has no .jpg/.jpeg/.png/.webp")


PHOTOS = REPO / "calibration" / "images"


# edgekit predict
def test_predict_segmentation_writes_the_pictures(tflite_b0, tmp_path):
    r = runner.invoke(app, ["predict", str(tflite_b0), str(PHOTOS / "city.png"), "-o", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    (p,) = result["predictions"]
    overlay, classes = Image.open(p["files"]["overlay"]), Image.open(p["files"]["classes"])
    assert classes.size == (2048, 1024) and overlay.mode == "RGB"
    strip = overlay.height - classes.height  # the RANDOM WEIGHTS banner: a margin above the photo
    assert overlay.width == 2048 and 14 < strip < 80
    assert classes.mode == "P" and np.asarray(classes).max() < 19  # pixel value = class index
    from edgekit.labels import palette

    assert classes.getpalette()[:19 * 3] == [c for rgb in palette("cityscapes") for c in rgb]
    assert sum(c["share"] for c in p["classes"]) == pytest.approx(1.0)
    pixels = np.asarray(overlay)
    assert pixels[5, 5].tolist() == [180, 0, 0] and pixels[strip + 2, 5].tolist() != [180, 0, 0]  # photo uncovered
    # the classes at photo size from the logits resized bicubic, as the official evaluation does: not blocks
    # of 8x8 pixels (1024x2048 from a 1/8 map); a class boundary that runs at a 1-pixel step somewhere
    cls = np.asarray(classes)
    assert (cls[:, 1:] != cls[:, :-1]).any(axis=0)[np.arange(2047) % 8 != 7].any()
    assert result["random_weights"] and "mean nothing" in runner.invoke(
        app, ["predict", str(tflite_b0), str(PHOTOS / "city.png"), "-o", str(tmp_path)]).stdout


def test_predict_classifier_top5_and_refusals(tmp_path, shared_artifact):
    m = export(ExportOptions("b0-cls", "tflite", "fp32", "64", output=tmp_path / "a"))
    r = runner.invoke(app, ["predict", m.artifact_dir, str(PHOTOS / "cat.jpg"), "-o", str(tmp_path / "p"), "--json"])
    assert r.exit_code == 0, r.output
    (p,) = json.loads(r.stdout)["predictions"]
    probs = [t["probability"] for t in p["top"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    assert Image.open(p["files"]["top5"]).size[0] > 448
    one_line_error(runner.invoke(app, ["predict", m.artifact_dir, str(tmp_path / "none.jpg")]), "not found")
    # CoreML off macOS: its proxy (the converted torch model, in the device's fp16) runs, and says so
    coreml = shared_artifact("b0-seg", "coreml", "fp16", "64x128")
    r = runner.invoke(app, ["predict", coreml.artifact_dir, str(PHOTOS / "city.png"), "-o", str(tmp_path / "q"),
                            "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["proxy"] and result["runner"].startswith("the torch model that was converted, run by PyTorch in fp16")
    assert "CoreML prediction needs macOS" in result["runner"]
    (p,) = result["predictions"]
    top = np.asarray(Image.open(p["files"]["overlay"]))
    strip = Image.open(p["files"]["overlay"]).height - Image.open(p["files"]["classes"]).height
    assert (top[:strip, 5] == [180, 0, 0]).all(axis=1).mean() > 0.5  # two banners: random weights, proxy


def test_predict_on_a_failed_artifact_says_so_in_the_report_and_on_the_picture(tflite_b0, tmp_path):
    failed = tmp_path / "failed"
    shutil.copytree(tflite_b0, failed)
    data = json.loads((failed / "edgekit.json").read_text())
    data["verification"] = {**data["verification"], "passed": False, "failures": ["SQNR min 12.0 dB < 20"]}
    (failed / "edgekit.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    r = runner.invoke(app, ["predict", str(failed), str(PHOTOS / "city.png"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "this artifact FAILED verification: SQNR min 12.0 dB < 20" in r.stdout
    result = json.loads(runner.invoke(app, ["predict", str(failed), str(PHOTOS / "city.png"), "-o", str(out),
                                            "--json"]).stdout)
    overlay = Image.open(result["predictions"][0]["files"]["overlay"])
    ok = Image.open(json.loads(runner.invoke(app, ["predict", str(tflite_b0), str(PHOTOS / "city.png"), "-o",
                                                   str(tmp_path / "ok"), "--json"]).stdout)["predictions"][0]["files"]
                    ["overlay"])
    assert overlay.height > ok.height  # one more banner strip: the FAILED one, above the photo
    assert np.asarray(overlay)[5, 5].tolist() == [180, 0, 0]


def test_one_unreadable_photo_stops_the_batch_unless_it_is_skipped(onnx_b0, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(IMAGES / "mit-fig-5.jpeg", photos / "a.jpeg")
    (photos / "b.jpeg").write_bytes((IMAGES / "mit-fig-6.jpeg").read_bytes()[:300])  # truncated
    out = tmp_path / "p"
    one_line_error(runner.invoke(app, ["predict", onnx_b0.artifact_dir, str(photos), "-o", str(out)]),
                   "b.jpeg")
    assert not out.exists()  # nothing written
    r = runner.invoke(app, ["predict", onnx_b0.artifact_dir, str(photos), "-o", str(out), "--skip-unreadable",
                            "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert [Path(p["image"]).name for p in result["predictions"]] == ["a.jpeg"]
    assert [Path(u["image"]).name for u in result["unreadable"]] == ["b.jpeg"]
