"""`edgekit export`: variant -> torch model -> deploy form -> artifact directory -> verification.

The artifact directory `<output>/<variant>-<HxW>-<target>-<precision>/` is built in a temporary
sibling and renamed into place only after the model converted and its verification ran, so a
failed export leaves nothing behind.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgekit import __version__
from edgekit.artifacts import MANIFEST, atomic_directory, check_writable, sha256, size_bytes, tool_versions, write_json
from edgekit.deploy import Target, Upsample, check_precision, make_deploy_form
from edgekit.errors import EdgekitError
from edgekit.models import build_model
from edgekit.registry import Size, Variant, get_variant, parse_resolution

DEFAULT_OUTPUT = Path("edgekit-artifacts")
STAND_IN_SEED = 0
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    variant: str
    target: Target = Target.TFLITE
    precision: str = "fp32"
    resolution: str | None = None
    weights: Path | None = None
    layout: str = "nhwc"
    io: str = "float"
    calibration: Path | None = None
    num_calibration: int = 8
    upsample: Upsample | None = None
    output: Path = field(default=DEFAULT_OUTPUT)
    ios: int = 16  # CoreML minimum deployment target
    input_kind: str = "image"  # CoreML: "image" (CVPixelBuffer) or "tensor" (normalised float)


def _validate(opts: ExportOptions) -> None:
    check_precision(opts.target, opts.precision)
    if opts.io not in ("float", "int8"):
        raise EdgekitError(f"--io {opts.io!r} is not one of: float, int8")
    if opts.io == "int8" and opts.precision != "int8":
        raise EdgekitError("--io int8 needs --precision int8 (integer inputs exist only in a full-integer model)")
    if opts.layout not in ("nhwc", "nchw"):
        raise EdgekitError(f"--layout {opts.layout!r} is not one of: nhwc, nchw")
    if opts.layout == "nchw" and opts.target is not Target.TFLITE:
        raise EdgekitError("--layout applies to TFLite only (ONNX and CoreML models are NCHW)")
    if opts.target is Target.COREML:
        from targets.coreml import IOS_TARGETS

        if opts.ios not in IOS_TARGETS:
            raise EdgekitError(f"--ios {opts.ios} is not one of: {', '.join(map(str, IOS_TARGETS))}")
        if opts.input_kind not in ("image", "tensor"):
            raise EdgekitError(f"--input {opts.input_kind!r} is not one of: image, tensor")
        if opts.precision == "int8" and opts.ios < 17:
            raise EdgekitError("--precision int8 quantises activations, which CoreML runs from iOS 17: add --ios 17")


def source_model(variant: Variant, size: Size, weights: Path | None) -> tuple[nn.Module, dict]:
    """The PyTorch model an artifact comes from: the checkpoint, or the reproducible random stand-in."""
    from calibration.images import builtin_images, image_batch

    torch.manual_seed(STAND_IN_SEED)
    model = build_model(variant, size)
    if weights is not None:
        from edgekit.checkpoints import load_weights

        load_weights(model, weights, variant)
        return model, {"weights": str(Path(weights).resolve()), "sha256": sha256(Path(weights))}
    from edgekit.models.init import calibrated_random_init

    paths = builtin_images(variant.dataset)
    calibrated_random_init(model, image_batch(variant, size, paths), seed=STAND_IN_SEED)
    return model, {
        "weights": None,
        "stand_in": {"seed": STAND_IN_SEED, "bn_statistics_from": [p.name for p in paths]},
        "warning": "RANDOM WEIGHTS: no --weights given; this artifact shows the conversion, not a trained model",
    }


def artifact_name(variant: Variant, size: Size, target: Target, precision: str) -> str:
    return f"{variant.name}-{size[0]}x{size[1]}-{target.value}-{precision}"


def export(opts: ExportOptions, progress: Progress = lambda _msg: None) -> dict:
    _validate(opts)
    variant = get_variant(opts.variant)
    size = parse_resolution(opts.resolution, variant)
    calib = None
    if opts.precision == "int8":
        from calibration.sources import calibration_set

        calib = calibration_set(variant, size, opts.calibration, opts.num_calibration)
    check_writable(Path(opts.output))  # last check: it creates the output folder
    started = time.perf_counter()
    progress(f"building {variant.name} at {size[0]}x{size[1]}")
    model, source = source_model(variant, size, opts.weights)
    form = make_deploy_form(model, size, opts.target, opts.precision, opts.upsample,
                            calibration=calib.data if calib is not None else None)
    final = Path(opts.output) / artifact_name(variant, size, opts.target, opts.precision)
    with atomic_directory(final) as tmp, tempfile.TemporaryDirectory(prefix="edgekit-work-") as work:
        converted = None
        if opts.target is Target.COREML:
            model_file, ops, io, converted = _convert_coreml(opts, variant, form.model, size, tmp, calib, progress)
        else:
            model_file, ops, io = _convert(opts, form.model, size, variant.num_classes, Path(work), tmp, calib, progress)
        manifest = _manifest(opts, variant, size, form, source, model_file, ops, io, calib)
        _write_labels(variant, tmp)
        progress("verifying against PyTorch on real images")
        from edgekit.verify import verify_model

        manifest["verification"] = verify_model(model_file, manifest, model, converted)
        manifest["export_seconds"] = round(time.perf_counter() - started, 1)
        write_json(tmp / MANIFEST, manifest)
    manifest["artifact_dir"] = str(final)
    return manifest


def _convert_coreml(opts: ExportOptions, variant: Variant, deploy: nn.Module, size: Size, out: Path, calib, progress):
    """The package, its MIL ops and I/O, and the torch model that was converted (deploy form, or its
    calibrated int8 version)."""
    from edgekit.info import output_semantics
    from edgekit.labels import class_names
    from targets import coreml

    progress(f"converting to CoreML {opts.precision} (torch.export, coremltools, iOS {opts.ios})")
    metadata = {
        "description": f"EfficientViT {variant.name}: {output_semantics(variant)}",
        "license": "model code: edgekit; weights: see the checkpoint's licence",
        "version": __version__,
        "variant": variant.name,
        "resolution": f"{size[0]}x{size[1]}",
        "edgekit_version": __version__,
    }
    labels = class_names(variant) if variant.task == "cls" else None
    if opts.precision == "int8":
        progress(f"calibrating int8 activations on {len(calib.data)} images (coremltools.optimize.torch)")
        deploy = coreml.calibrated_int8(deploy, calib.data)
    ml = coreml.convert(deploy, size, opts.precision, opts.ios, opts.input_kind == "image", variant.mean,
                        variant.std, labels, metadata)
    model_file = out / "model.mlpackage"
    ml.save(str(model_file))
    return model_file, coreml.mil_ops(ml), coreml.describe_io(ml), deploy


def _convert(opts: ExportOptions, deploy: nn.Module, size: Size, classes: int, work: Path, out: Path, calib, progress):
    from targets.onnx import INPUT_NAME, export_onnx

    progress("exporting the deploy form to ONNX")
    onnx_path = export_onnx(deploy, size, work / "deploy.onnx")
    if opts.target is Target.ONNX:
        from targets.onnx import load_graph, op_histogram, simplify_onnx

        model_file = simplify_onnx(onnx_path, out / "model.onnx")
        return model_file, op_histogram(load_graph(model_file)), _io_onnx(size)
    from calibration.images import builtin_images, load_rgb
    from targets import tflite

    progress(f"converting to TFLite {opts.precision} (onnxsim, onnx2tf{', int8 calibration' if calib else ''})")
    sample = _sample_nhwc01([load_rgb(p) for p in builtin_images()], size)
    result = tflite.convert(
        onnx_path, work, tflite.Precision(opts.precision), tflite.Layout(opts.layout), INPUT_NAME, sample,
        calib.data if calib is not None else None, int8_io=opts.io == "int8",
    )
    model_file = out / "model.tflite"
    shutil.move(str(result.path), model_file)
    return model_file, result.ops, _io_tflite(model_file, classes)


def _sample_nhwc01(images, size: Size) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(im.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32) / 255 for im in images])


def _io_onnx(size: Size) -> dict:
    from targets.onnx import INPUT_NAME, OUTPUT_NAME

    return {"input": {"name": INPUT_NAME, "shape": [1, 3, *size], "layout": "NCHW", "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "layout": "NCHW", "dtype": "float32"}}


def _layout(shape, classes: int) -> str:
    if len(shape) != 4:
        return "NC"
    return "NHWC" if shape[-1] == classes else "NCHW"


def _io_tflite(path: Path, classes: int) -> dict:
    from edgekit.runtime import TFLiteRunner

    r = TFLiteRunner(path)
    inp, out = r.input, r.output

    def quant(d):
        scale, zero = d["quantization"]
        return {"scale": float(scale), "zero_point": int(zero)} if d["dtype"] in (np.int8, np.uint8) else None

    return {
        "input": {"name": inp["name"], "shape": [int(s) for s in inp["shape"]], "layout": "NHWC" if r.input_nhwc else "NCHW",
                  "dtype": np.dtype(inp["dtype"]).name, "quantization": quant(inp)},
        "output": {"name": out["name"], "shape": [int(s) for s in out["shape"]], "layout": _layout(out["shape"], classes),
                   "dtype": np.dtype(out["dtype"]).name, "quantization": quant(out)},
    }


def _write_labels(variant: Variant, out: Path) -> None:
    from edgekit.labels import class_names

    (out / "labels.txt").write_text("\n".join(class_names(variant)) + "\n")


def _manifest(opts, variant: Variant, size: Size, form, source: dict, model_file: Path, ops: dict, io: dict, calib) -> dict:
    from edgekit.info import output_semantics, variant_summary

    return {
        "edgekit_version": __version__,
        **variant_summary(variant, size),
        "target": opts.target.value,
        "precision": opts.precision,
        "model_file": model_file.name,
        "file_bytes": size_bytes(model_file),
        "sha256": sha256(model_file),
        "io": io,
        "normalization": {"color": "RGB", "scale": 1 / 255, "mean": list(variant.mean), "std": list(variant.std)},
        "output_semantics": output_semantics(variant),
        "output_stride": variant.output_stride,
        "labels": "labels.txt",
        "rewrites": [{"name": r.name, "exact": r.exact, "summary": r.summary} for r in form.rewrites],
        "source": source,
        "coreml": {"ios": opts.ios, "input": opts.input_kind} if opts.target is Target.COREML else None,
        "calibration": None if calib is None else {"source": calib.source, "samples": len(calib.data),
                                                   "originals": calib.originals},
        "ops": ops,
        "tools": tool_versions(),
    }
