"""`edgekit package`: bundles from real exports; the generated Kotlin/Swift are parsed and every
constant is checked against the model file itself (not only against the manifest it came from)."""

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import one_line_error, require_tools
from edgekit.cli import app
from edgekit.export import ExportOptions, export
from edgekit.labels import palette
from edgekit.package import PackageOptions, package

runner = CliRunner()


# ---- tiny parsers for the two snippet languages: the declarations we generate, nothing more ----------
def _value(text: str):
    text = text.strip()
    if text.startswith('"'):
        return json.loads(text)
    array = re.fullmatch(r"(?:intArrayOf|floatArrayOf)\((.*)\)|\[(.*)\]", text, re.S)
    if array:
        body = array.group(1) if array.group(1) is not None else array.group(2)
        items = re.findall(r"\[[^\[\]]*\]|[^,\s][^,]*", body)
        return [_value(i) for i in items]
    return float(text[:-1]) if text.endswith("f") else (float(text) if "." in text or "e" in text else int(text))


def kotlin_constants(code: str) -> dict:
    found = re.findall(r"^\s*(?:const )?val ([A-Z][A-Z0-9_]*) = ([^\n]+?)(?:\s*//[^\n]*)?$", code, re.M)
    return {name: _value(value) for name, value in found}


def swift_constants(code: str) -> dict:
    found = re.findall(r"^\s*static let (\w+)(?:: [^=]+)? = ([^\n]+?)(?:\s*//[^\n]*)?$", code, re.M)
    return {name: _value(value) for name, value in found}


def _tflite_details(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return interp.get_input_details()[0], interp.get_output_details()[0]


def _single(records):
    assert len(records) == 1
    bundle = Path(records[0]["bundle"])
    return records[0], bundle, json.loads((bundle / "model.json").read_text())


# ---- the generated Kotlin, compiled and run on the JVM against tests/android_stubs ---------------------
STUBS = Path(__file__).parent / "android_stubs"
DRIVER = """
import ai.edgekit.model.EdgekitModel
import android.content.Context
import android.content.res.AssetManager
import android.graphics.Bitmap
import java.io.DataInputStream
import java.io.File

fun main(args: Array<String>) {
    val assets = File(args[0])
    val work = File(args[1])
    val data = DataInputStream(work.resolve("pixels.bin").inputStream().buffered())
    val w = data.readInt()
    val h = data.readInt()
    val bitmap = Bitmap.createBitmap(IntArray(w * h) { data.readInt() }, w, h, Bitmap.Config.ARGB_8888)
    val context = object : Context() { override fun getAssets() = AssetManager(assets) }
    val model = EdgekitModel(context)  // (Kotlin 1.3's stdlib has no AutoCloseable.use: close by hand)
    try {
        CALL
    } finally {
        model.close()
    }
}
"""
SEG_CALL = """val classes = model.segment(bitmap)
        work.resolve("classes.txt").writeText(classes.joinToString("\\n"))
        val colored = model.colorize(classes)
        val argb = (0 until colored.height).flatMap { y -> (0 until colored.width).map { x -> colored.getPixel(x, y) } }
        work.resolve("colors.txt").writeText(argb.joinToString("\\n"))"""
SR_CALL = """val up = model.upscale(bitmap)
        val argb = (0 until up.height).flatMap { y -> (0 until up.width).map { x -> up.getPixel(x, y) } }
        work.resolve("upscaled.txt").writeText("${up.width} ${up.height}\\n" + argb.joinToString("\\n"))"""
CLS_CALL = """val top = model.classify(bitmap, 5)
        work.resolve("top.txt").writeText(top.joinToString("\\n") { "${it.first}\\t${it.second}" })"""


@pytest.fixture(scope="session")
def stub_classes(tmp_path_factory):
    import subprocess

    require_tools("kotlinc", package="kotlin")
    require_tools("javac", package="default-jdk-headless")
    out = tmp_path_factory.mktemp("stub_classes")
    sources = [str(p) for p in STUBS.rglob("*.java")]
    subprocess.run(["javac", "-d", str(out), *sources], check=True, capture_output=True, timeout=300)
    return out


def run_kotlin(bundle: Path, stub_classes: Path, work: Path, pixels: np.ndarray, output: np.ndarray,
               tensors: tuple[dict, dict] | None = None) -> None:
    """Compile the bundle's EdgekitModel.kt with a driver, run it on `pixels` (H, W, 3 uint8); the
    stub runtime (LiteRT's Interpreter, ExecuTorch's Module, ONNX Runtime's session) answers with
    `output` (what the real model gives for that input). `tensors`: the input and output
    (name, shape, dtype) the stubs declare; default: the bundle's model.tflite's own."""
    import subprocess

    work.mkdir(parents=True, exist_ok=True)
    inp, out = tensors or _tflite_details(bundle / "model.tflite")
    (work / "tensors.txt").write_text("\n".join([inp["name"], ",".join(map(str, inp["shape"])), out["name"],
                                                 ",".join(map(str, out["shape"]))]) + "\n")
    (work / "output.bin").write_bytes(np.ascontiguousarray(output, dtype=out["dtype"]).astype(
        np.dtype(out["dtype"]).newbyteorder("<")).tobytes())
    h, w, _ = pixels.shape
    argb = (0xFF << 24) | (pixels[..., 0].astype(np.uint32) << 16) | (pixels[..., 1].astype(np.uint32) << 8) \
        | pixels[..., 2].astype(np.uint32)
    (work / "pixels.bin").write_bytes(np.array([w, h], ">i4").tobytes() + argb.astype(">u4").tobytes())
    code = (bundle / "EdgekitModel.kt").read_text()
    call = SEG_CALL if "fun segment" in code else SR_CALL if "fun upscale" in code else CLS_CALL
    (work / "Driver.kt").write_text(DRIVER.replace("CALL", call))
    jar = work / "app.jar"
    done = subprocess.run(["kotlinc", str(bundle / "EdgekitModel.kt"), str(work / "Driver.kt"), "-cp", str(stub_classes),
                           "-include-runtime", "-d", str(jar)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning:" in line and "EdgekitModel.kt" in line]
    assert warnings == [], warnings  # the generated code compiles cleanly
    done = subprocess.run(["java", f"-Dedgekit.stub.dir={work}", "-cp", f"{jar}:{stub_classes}", "DriverKt",
                           str(bundle), str(work)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def normalised(pixels: np.ndarray, spec: dict) -> np.ndarray:
    """(pixel / 255 - mean) / std in float32, the snippet's order of operations; NHWC."""
    norm = spec["input"]["normalization"]
    x = pixels.astype(np.float32) / np.float32(255)
    return (x - np.array(norm["mean"], np.float32)) / np.array(norm["std"], np.float32)


def photo(name: str, width: int, height: int) -> np.ndarray:
    from PIL import Image

    from edgekit.calibration.images import BUILTIN_DIR, load_rgb

    return np.asarray(load_rgb(BUILTIN_DIR / name).resize((width, height), Image.BILINEAR), dtype=np.uint8)


def real_output(model: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], x.reshape(inp["shape"]).astype(inp["dtype"]))
    interp.invoke()
    return interp.get_tensor(out["index"])


def check_segmentation(bundle: Path, work: Path, output: np.ndarray, spec: dict) -> None:
    classes = np.array((work / "classes.txt").read_text().split(), dtype=np.int64)
    if spec["output"]["layout"] == "NHWC":  # classes last
        expected = output.reshape(-1, spec["classes"]).astype(np.float64).argmax(axis=1)
    else:
        expected = output.reshape(spec["classes"], -1).astype(np.float64).argmax(axis=0)
    np.testing.assert_array_equal(classes, expected)
    palette = np.array(spec["palette"], dtype=np.int64)[expected]
    argb = ((0xFF << 24) | (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]).astype(np.uint32)
    np.testing.assert_array_equal(np.array((work / "colors.txt").read_text().split(), np.int64).astype(np.uint32), argb)


# ---- Android ---------------------------------------------------------------------------------------
def test_android_bundle_of_b0_seg(b0_fp32, tmp_path, stub_classes):
    out, manifest = b0_fp32
    art = Path(manifest.artifact_dir)
    record, bundle, spec = _single(package(PackageOptions((art,), "android", tmp_path)))
    assert record["files"] == ["EdgekitModel.kt", "README.md", "labels.txt", "model.json", "model.tflite"]
    assert (bundle / "model.tflite").read_bytes() == (art / "model.tflite").read_bytes()

    k = kotlin_constants((bundle / "EdgekitModel.kt").read_text())
    inp, outp = _tflite_details(bundle / "model.tflite")  # the constants must match the model file itself
    assert k["INPUT_NAME"] == inp["name"] and k["INPUT_SHAPE"] == inp["shape"].tolist() == [1, 128, 256, 3]
    assert k["OUTPUT_NAME"] == outp["name"] and k["OUTPUT_SHAPE"] == outp["shape"].tolist() == [1, 16, 32, 19]
    assert (k["INPUT_HEIGHT"], k["INPUT_WIDTH"], k["OUTPUT_HEIGHT"], k["OUTPUT_WIDTH"]) == (128, 256, 16, 32)
    assert k["MEAN"] == [0.485, 0.456, 0.406] and k["STD"] == [0.229, 0.224, 0.225]
    assert k["NUM_CLASSES"] == 19 == len((bundle / "labels.txt").read_text().splitlines())
    assert k["PALETTE_RGB"][:6] == [128, 64, 128, 244, 35, 232] and len(k["PALETTE_RGB"]) == 19 * 3
    assert "INPUT_SCALE" not in k  # float I/O: no quantisation constants
    code = (bundle / "EdgekitModel.kt").read_text()
    assert "z[i * NUM_CLASSES + c]" in code  # NHWC output indexing, as the model's output is laid out
    assert "RANDOM WEIGHTS" in code and spec["warning"]

    assert spec["input"]["name"] == inp["name"] and spec["output"]["shape"] == [1, 16, 32, 19]
    assert spec["palette"] == palette("cityscapes") and spec["verification"]["passed"]
    with zipfile.ZipFile(record["zip"]) as z:
        names = sorted(z.namelist())
        assert names == sorted(f"{bundle.name}/{f}" for f in record["files"])
        assert z.read(f"{bundle.name}/model.tflite") == (art / "model.tflite").read_bytes()

    # the same artifact packaged again gives the same zip, byte for byte
    first = Path(record["zip"]).read_bytes()
    package(PackageOptions((art,), "android", tmp_path))
    assert Path(record["zip"]).read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [bundle.name, f"{bundle.name}.zip"]  # no temp files

    # the Kotlin compiles, and run on a real photo it feeds the model exactly the normalised NHWC
    # pixels and decodes the model's real output into the right classes and colours
    pixels = photo("city.png", 256, 128)
    x = normalised(pixels, spec)
    output = real_output(bundle / "model.tflite", x)
    work = tmp_path.parent / f"{tmp_path.name}-kotlin"
    run_kotlin(bundle, stub_classes, work, pixels, output)
    fed = np.frombuffer((work / "input.bin").read_bytes(), "<f4")
    np.testing.assert_array_equal(fed, x.reshape(-1))
    check_segmentation(bundle, work, output, spec)


def test_int8_io_bundle_has_the_models_quantisation(tmp_path, stub_classes):
    m = export(ExportOptions("b0-seg", "tflite", "int8", "64x128", target_options={"io": "int8", "keep_float": 0}, num_calibration=2,
                             output=tmp_path / "a"))
    # two calibration samples at 64x128: this int8 model misses its held-out bar, so packaging it needs
    # --allow-failed, and then the bundle says so everywhere (see test_failed_artifact_packages_only_when_allowed)
    assert not m.verification["passed"]
    record, bundle, spec = _single(package(PackageOptions((Path(m.artifact_dir),), "android", tmp_path / "b",
                                                          allow_failed=True)))
    k = kotlin_constants((bundle / "EdgekitModel.kt").read_text())
    inp, outp = _tflite_details(bundle / "model.tflite")
    assert inp["dtype"] == np.int8 and outp["dtype"] == np.int8
    assert k["INPUT_SCALE"] == pytest.approx(inp["quantization"][0], rel=1e-6)
    assert k["INPUT_ZERO_POINT"] == inp["quantization"][1]
    assert k["OUTPUT_SCALE"] == pytest.approx(outp["quantization"][0], rel=1e-6)
    assert k["OUTPUT_ZERO_POINT"] == outp["quantization"][1]
    code = (bundle / "EdgekitModel.kt").read_text()
    assert ".coerceIn(-128, 127).toByte()" in code and "OUTPUT_ZERO_POINT) * OUTPUT_SCALE" in code
    assert spec["input"]["quantization"]["scale"] == pytest.approx(inp["quantization"][0])

    # run: int8 quantisation of the input (round half up, as Kotlin's roundToInt) and dequantised decode
    pixels = photo("indoor.jpg", 128, 64)
    scale, zero = inp["quantization"]
    v = normalised(pixels, spec) / np.float32(scale) + np.float32(zero)
    q = np.clip(np.floor(v + np.float32(0.5)), -128, 127).astype(np.int8)
    output = real_output(bundle / "model.tflite", q)
    run_kotlin(bundle, stub_classes, tmp_path / "kotlin", pixels, output)
    np.testing.assert_array_equal(np.frombuffer((tmp_path / "kotlin" / "input.bin").read_bytes(), np.int8),
                                  q.reshape(-1))
    check_segmentation(bundle, tmp_path / "kotlin", output, spec)


def test_android_nchw_bundle_runs(tmp_path, stub_classes):
    """--layout nchw: the snippet writes all of R, then G, then B, and still decodes the output."""
    m = export(ExportOptions("b0-seg", "tflite", "fp32", "64x128", target_options={"layout": "nchw"}, output=tmp_path / "a"))
    _, bundle, spec = _single(package(PackageOptions((Path(m.artifact_dir),), "android", tmp_path / "b")))
    assert kotlin_constants((bundle / "EdgekitModel.kt").read_text())["INPUT_SHAPE"] == [1, 3, 64, 128]
    pixels = photo("city.png", 128, 64)
    x = normalised(pixels, spec).transpose(2, 0, 1)  # CHW
    output = real_output(bundle / "model.tflite", x)
    run_kotlin(bundle, stub_classes, tmp_path / "kotlin", pixels, output)
    np.testing.assert_array_equal(np.frombuffer((tmp_path / "kotlin" / "input.bin").read_bytes(), "<f4"),
                                  x.reshape(-1))
    if spec["output"]["layout"] == "NHWC":
        check_segmentation(bundle, tmp_path / "kotlin", output, spec)
    else:  # classes on axis 1
        classes = np.array((tmp_path / "kotlin" / "classes.txt").read_text().split(), dtype=np.int64)
        np.testing.assert_array_equal(classes, output.reshape(spec["classes"], -1).argmax(axis=0))


def test_android_classifier_bundle_runs(tmp_path, stub_classes):
    m = export(ExportOptions("b0-cls", "tflite", "fp32", "64", output=tmp_path / "a"))
    _, bundle, spec = _single(package(PackageOptions((Path(m.artifact_dir),), "android", tmp_path / "b")))
    k = kotlin_constants((bundle / "EdgekitModel.kt").read_text())
    inp, outp = _tflite_details(bundle / "model.tflite")
    assert k["INPUT_SHAPE"] == inp["shape"].tolist() == [1, 64, 64, 3] and k["OUTPUT_SHAPE"] == [1, 1000]
    assert k["CROP_RATIO"] == 0.875 and "PALETTE_RGB" not in k

    # a 73x73 photo: the snippet crops its central 64x64 (0.875 of the short side), no resize needed
    pixels = photo("cat.jpg", 73, 73)
    x = normalised(pixels[4:68, 4:68], spec)
    output = real_output(bundle / "model.tflite", x)
    run_kotlin(bundle, stub_classes, tmp_path / "kotlin", pixels, output)
    np.testing.assert_array_equal(np.frombuffer((tmp_path / "kotlin" / "input.bin").read_bytes(), "<f4"),
                                  x.reshape(-1))
    top = [line.split("\t") for line in (tmp_path / "kotlin" / "top.txt").read_text().splitlines()]
    logits = output.reshape(-1).astype(np.float64)
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    best = np.argsort(-probs, kind="stable")[:5]
    labels = (bundle / "labels.txt").read_text().splitlines()
    assert [name for name, _ in top] == [labels[i] for i in best]
    np.testing.assert_allclose([float(p) for _, p in top], probs[best], rtol=1e-4)


def _stub_tensors(spec: dict) -> tuple[dict, dict]:
    inp, out = spec["input"], spec["output"]
    return ({"name": inp["name"], "shape": inp["shape"], "dtype": np.float32},
            {"name": out["name"], "shape": out["shape"], "dtype": np.float32})


def test_android_sr_bundle_tiles_as_edgekit_does(onnx_sr, tmp_path, stub_classes):
    """upscale() on a photo larger than the input in both directions: the snippet's tiles, edge padding and
    ramp blending give edgekit.tiling's image (the stub runtime answers every tile with one real output)."""
    from edgekit.sr_data import to_pixels
    from edgekit.tiling import run_tiled

    _, bundle, spec = _single(package(PackageOptions((onnx_sr,), "android", tmp_path / "b")))
    assert spec["tiling"] == {"scale": 2, "overlap": 16, "tile": [64, 96]} and spec["output"]["height"] == 128
    pixels = photo("bear.jpeg", 150, 100)  # 2x2 tiles of 64x96, overlapping
    tile = pixels[:64, :96].astype(np.float32).transpose(2, 0, 1)[None] / 255
    import onnxruntime as ort

    output = ort.InferenceSession(str(bundle / "model.onnx")).run(None, {spec["input"]["name"]: tile})[0]
    run_kotlin(bundle, stub_classes, tmp_path / "kotlin", pixels, output, _stub_tensors(spec))
    lines = (tmp_path / "kotlin" / "upscaled.txt").read_text().split("\n")
    assert lines[0] == "300 200"
    argb = np.array(lines[1:], dtype=np.int64).astype(np.uint32).reshape(200, 300)
    got = np.stack([(argb >> 16) & 0xFF, (argb >> 8) & 0xFF, argb & 0xFF], axis=-1).astype(np.int64)
    x = pixels.astype(np.float32).transpose(2, 0, 1) / 255
    expected = to_pixels(run_tiled(lambda _t: output, x, (64, 96), 2)).astype(np.int64)
    assert np.abs(got - expected).max() <= 1  # float32 sums and round-half-up against float64


@pytest.mark.parametrize("target", ["executorch", "qnn", "onnx"])
def test_android_bundles_of_the_new_targets_run(tmp_path, stub_classes, target):
    """ExecuTorch (Module.load, Tensor.fromBlob), QNN (ONNX Runtime's QNN EP on the compiled EPContext
    model) and ONNX (ONNX Runtime's CPU session from the asset's bytes): the Kotlin compiles against
    stand-ins of those APIs and, on a real photo, feeds the model the NCHW normalised pixels and decodes
    the real runtime's output."""
    from edgekit.manifest import read_manifest
    from edgekit.runtime import open_runner

    m = export(ExportOptions("b0-seg", target, None, "64x128", output=tmp_path / "a"))
    _, bundle, spec = _single(package(PackageOptions((Path(m.artifact_dir),), "android", tmp_path / "b")))
    assert spec["input"]["layout"] == "NCHW" and spec["output"]["shape"] == [1, 19, 8, 16]
    pixels = photo("mit-fig-5.jpeg", 128, 64)
    x = normalised(pixels, spec).transpose(2, 0, 1)  # the snippet's NCHW order
    output = open_runner(read_manifest(Path(m.artifact_dir))).run(x[None].astype(np.float32))
    run_kotlin(bundle, stub_classes, tmp_path / "kotlin", pixels, output, _stub_tensors(spec))
    fed = np.frombuffer((tmp_path / "kotlin" / "input.bin").read_bytes(), "<f4")
    np.testing.assert_array_equal(fed, x.reshape(-1))
    check_segmentation(bundle, tmp_path / "kotlin", output, spec)
    if target == "qnn":  # the app copied the compiled model and its context binary out of the assets
        assert sorted(p.name for p in (tmp_path / "kotlin" / "files" / "model.qnn" / "s8gen1").iterdir()) == [
            "model.onnx", "model_qnn.bin"]


# ---- iOS ---------------------------------------------------------------------------------------------
def test_ios_bundle_of_m0_cls(tmp_path):
    import coremltools as ct

    m = export(ExportOptions("m0-cls", "coreml", "fp16", output=tmp_path / "a"))
    record, bundle, spec = _single(package(PackageOptions((Path(m.artifact_dir),), "ios", tmp_path / "b")))
    assert record["files"] == ["EdgekitModel.swift", "README.md", "labels.txt", "model.json", "model.mlpackage"]
    assert "needs macOS" in record["compiled_model"]  # no .mlmodelc is claimed on Linux

    s = swift_constants((bundle / "EdgekitModel.swift").read_text())
    desc = ct.models.MLModel(str(bundle / "model.mlpackage"), skip_model_load=True).get_spec().description
    image = desc.input[0].type.imageType
    assert s["inputName"] == desc.input[0].name == "image"
    assert s["inputShape"] == [1, 3, image.height, image.width] == [1, 3, 224, 224]
    assert s["outputName"] == desc.predictedFeatureName == "classLabel"
    assert s["scoresName"] == desc.predictedProbabilitiesName == "classLabel_probs"
    assert s["mean"] == [0.485, 0.456, 0.406] and s["std"] == [0.229, 0.224, 0.225]
    assert s["cropRatio"] == 0.875 and s["numClasses"] == 1000 and s["modelName"] == "model"
    code = (bundle / "EdgekitModel.swift").read_text()
    assert "VNClassificationObservation" in code and "centreCrop" in code and "MLMultiArray" not in code
    assert spec["input"]["normalization"]["applied"] == "inside the model"
    labels = (bundle / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and labels[:2] == ["tench", "goldfish"]
    with zipfile.ZipFile(record["zip"]) as z:  # the package directory is zipped whole
        assert any(n.startswith(f"{bundle.name}/model.mlpackage/Data/") for n in z.namelist())
        assert f"{bundle.name}/model.mlpackage/Manifest.json" in z.namelist()


def test_ios_bundle_of_an_sr_model_tiles(tmp_path):
    """The Swift snippet of an SR model upscales any photo in tiles, with model.json's tiling (Swift cannot
    be compiled off macOS: the constants are checked against the model, the tiling against Kotlin's)."""
    import coremltools as ct

    m = export(ExportOptions("sr-x2", "coreml", "fp16", "64x96", output=tmp_path / "a"))
    _, bundle, spec = _single(package(PackageOptions((Path(m.artifact_dir),), "ios", tmp_path / "b")))
    code = (bundle / "EdgekitModel.swift").read_text()
    s = swift_constants(code)
    desc = ct.models.MLModel(str(bundle / "model.mlpackage"), skip_model_load=True).get_spec().description
    assert s["inputShape"] == [1, 3, 64, 96] and s["outputShape"] == [1, 3, 128, 192]
    assert s["outputName"] == desc.output[0].name and s["scale"] == 2 and s["overlap"] == 16
    assert spec["tiling"] == {"scale": 2, "overlap": 16, "tile": [64, 96]}
    assert "func upscale(_ photo: CGImage) throws -> CGImage" in code and "argmax" not in code
    assert "min(y0 + y, h - 1)" in code  # past the photo's edge its edge pixels repeat, as edgekit.tiling pads


def test_ios_bundle_of_a_tensor_input_seg_model(tmp_path):
    import coremltools as ct

    m = export(ExportOptions("b0-seg", "coreml", "fp16", "64x128", target_options={"input": "tensor"}, output=tmp_path / "a"))
    _, bundle, spec = _single(package(PackageOptions((Path(m.artifact_dir),), "ios", tmp_path / "b")))
    s = swift_constants((bundle / "EdgekitModel.swift").read_text())
    out = ct.models.MLModel(str(bundle / "model.mlpackage"), skip_model_load=True).get_spec().description.output[0]
    assert s["outputName"] == out.name == "logits"
    assert s["outputShape"] == list(out.type.multiArrayType.shape) == [1, 19, 8, 16]
    assert (s["outputHeight"], s["outputWidth"], s["numClasses"]) == (8, 16, 19)
    assert s["palette"][0] == [128, 64, 128] and len(s["palette"]) == 19
    code = (bundle / "EdgekitModel.swift").read_text()
    # a tensor input: the snippet normalises the pixels itself, with the constants above
    assert "MLMultiArray(shape: Info.inputShape" in code and "Info.mean[c]) / Info.std[c]" in code
    assert "import Vision" not in code
    assert spec["input"]["normalization"]["applied"].startswith("by the app")


# ---- errors: one line, nothing written ---------------------------------------------------------------
def test_package_refusals(b0_fp32, tmp_path):
    _, manifest = b0_fp32
    art = Path(manifest.artifact_dir)
    cases = [
        (["package", str(art), "--platform", "ios"], "takes coreml artifacts"),
        (["package", str(art), "--platform", "windows"], "is not one of: android, ios"),
        (["package", str(tmp_path), "--platform", "android"], "is not an edgekit artifact"),
    ]
    copy = tmp_path / "copy" / art.name
    copy.mkdir(parents=True)
    for f in art.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "model.tflite").write_bytes((art / "model.tflite").read_bytes()[:-4] + b"\0\0\0\0")
    cases.append((["package", str(copy), "--platform", "android"], "changed since export"))
    for args, needle in cases:
        out = tmp_path / "bundles"
        result = runner.invoke(app, [*args, "--output", str(out)])
        assert result.exit_code == 1, result.output
        assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()


def test_package_cli_json(b0_fp32, tmp_path):
    _, manifest = b0_fp32
    result = runner.invoke(app, ["package", manifest.artifact_dir, "--platform", "android", "-o", str(tmp_path),
                                 "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert records[0]["snippet"] == "EdgekitModel.kt" and Path(records[0]["zip"]).is_file()
    assert records[0]["random_weights"] is True and records[0]["verified"] is True


def test_a_failed_artifact_packages_only_when_allowed_and_then_says_so(tmp_path):
    m = export(ExportOptions("b0-seg", "tflite", "int8", "64x128", target_options={"keep_float": 0},
                             num_calibration=2, output=tmp_path / "a"))
    assert not m.verification["passed"]
    out = tmp_path / "b"
    one_line_error(runner.invoke(app, ["package", m.artifact_dir, "--platform", "android", "-o", str(out)]),
                    "FAILED its verification")
    assert not out.exists()
    r = runner.invoke(app, ["package", m.artifact_dir, "--platform", "android", "-o", str(out), "--allow-failed"])
    assert r.exit_code == 0, r.output
    bundle = out / f"{Path(m.artifact_dir).name}-android"
    assert "**WARNING: VERIFICATION FAILED" in (bundle / "README.md").read_text()
    assert json.loads((bundle / "model.json").read_text())["warnings"][0].startswith("VERIFICATION FAILED")
    header = (bundle / "EdgekitModel.kt").read_text().split("package ai.edgekit.model")[0]
    assert "// WARNING: VERIFICATION FAILED" in header and "FAILED" in r.stdout
