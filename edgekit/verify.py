"""Verification: an artifact against the PyTorch model it came from, on real photographs.

Runs after every export and again with `edgekit verify ARTIFACT_DIR` (which rebuilds the PyTorch
model from the manifest: the same checkpoint, checked by sha256, or the same seeded stand-in).
Each precision is held to the tolerance its target declares (`targets.tflite.VERIFY`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.metrics import compare


def tolerance(manifest: dict) -> dict:
    """Each target declares its own tolerances (STYLE: next to the target, not in a test)."""
    if manifest["target"] == "onnx":
        from targets.onnx import VERIFY

        return VERIFY
    if manifest["target"] == "coreml":
        from targets.coreml import verify_torch

        return verify_torch(manifest["precision"])
    from targets.tflite import VERIFY, Precision

    return VERIFY[Precision(manifest["precision"])]


def _passes(result: dict, tol: dict) -> bool:
    ok = result["finite"]
    if "max_rel" in tol:
        ok = ok and result["max_rel"] <= tol["max_rel"]
    if "psnr_db" in tol:
        ok = ok and result["psnr_db"] >= tol["psnr_db"]
    return bool(ok)


def _fp32_noise_floor(reference: nn.Module, images: np.ndarray, expected: np.ndarray) -> float:
    """How far PyTorch's own fp32 output is from the exact (float64) function, as max rel error."""
    import torch

    from edgekit.inspect import run_images

    return compare(run_images(reference, images, torch.float64), expected)["max_rel"]


def verify_model(model_file: Path, manifest: dict, reference: nn.Module, converted: nn.Module | None = None) -> dict:
    """Compare the artifact with `reference` on the built-in photographs of the variant's dataset.

    An fp32 artifact is held to max rel error 1e-4, or to twice PyTorch's own fp32 rounding error
    where that is larger: no fp32 artifact can be expected closer to PyTorch than PyTorch-fp32 is to
    the exact function, and deep random-weight stand-ins (B3) amplify rounding past 1e-4.
    """
    from calibration.images import builtin_images, image_batch
    from edgekit.inspect import run_images
    from edgekit.registry import get_variant
    from edgekit.runtime import runner_for

    variant = get_variant(manifest["variant"])
    size = tuple(manifest["resolution"])
    paths = builtin_images(variant.dataset)
    images = image_batch(variant, size, paths)
    expected = run_images(reference, images)
    if model_file.suffix == ".mlpackage":
        return _verify_coreml(model_file, manifest, reference, converted, images, expected, [p.name for p in paths])
    got = runner_for(model_file).run(images, expected.shape)
    if got.shape != expected.shape:
        raise EdgekitError(f"artifact output shape {got.shape} differs from PyTorch's {expected.shape}")
    result = compare(expected, got)
    tol = dict(tolerance(manifest))
    if "max_rel" in tol:
        floor = _fp32_noise_floor(reference, images, expected)
        tol = {"max_rel": max(tol["max_rel"], 2 * floor), "max_rel_base": tol["max_rel"],
               "pytorch_fp32_noise": floor}
    return {
        "images": [p.name for p in paths],
        "reference": "PyTorch (trained model, before any rewrite)",
        **result,
        "agreement_kind": "pixels with the same argmax" if variant.task == "seg" else "top-1 agreement",
        "tolerance": tol,
        "passed": _passes(result, tol),
    }


def _coreml_torch_model(manifest: dict, reference: nn.Module) -> nn.Module:
    """Rebuild the torch model an existing package was converted from: the same rewrites (the
    upsample it was exported with) and, for int8, recalibrated on the same calibration source, which
    is deterministic."""
    from edgekit.deploy import Target, make_deploy_form, upsample_of
    from edgekit.registry import get_variant

    size = tuple(manifest["resolution"])
    upsample = upsample_of([r["name"] for r in manifest["rewrites"]])
    calib = None
    if manifest["precision"] == "int8":
        from calibration.sources import calibration_set

        recorded = manifest["calibration"]
        source = None if recorded["source"] == "builtin" else recorded["source"]
        calib = calibration_set(get_variant(manifest["variant"]), size, source, recorded["samples"])
    deploy = make_deploy_form(reference, size, Target.COREML, manifest["precision"], upsample,
                              calibration=calib.data if calib is not None else None).model
    if calib is None:
        return deploy
    from targets.coreml import calibrated_int8

    return calibrated_int8(deploy, calib.data)


def _verify_coreml(model_file: Path, manifest: dict, reference: nn.Module, converted: nn.Module | None,
                   images: np.ndarray, expected: np.ndarray, names: list[str]) -> dict:
    """Linux: the package's structure and stored weights, and the torch model that was converted
    against the trained one. The package's own numbers need CoreML's predict, i.e. macOS: there they
    are compared; elsewhere reported as not run, never as a pass."""
    from edgekit.inspect import run_images
    from edgekit.labels import class_names
    from edgekit.registry import get_variant
    from targets.coreml import can_predict, check_weights, predict, structural_check, verify_torch

    variant = get_variant(manifest["variant"])
    precision = manifest["precision"]
    image_input = manifest["coreml"]["input"] == "image"
    structure = structural_check(model_file, manifest["io"])
    converted = converted if converted is not None else _coreml_torch_model(manifest, reference)
    weights = check_weights(model_file, converted, precision, prefix="model." if image_input else "")
    result = compare(expected, run_images(converted, images))
    tol = verify_torch(precision)
    passed = bool(structure["io_matches"] and not structure["unexpected_casts"] and weights["passed"]
                  and _passes(result, tol))
    if can_predict():
        labels = class_names(variant) if variant.task == "cls" else None
        package = compare(expected, predict(model_file, images, variant.mean, variant.std, image_input, labels))
        numerics = {"compared": "the mlpackage (CoreML predict) against PyTorch", **package}
        passed = passed and _passes(package, tol)
    else:
        numerics = "not run: CoreML prediction needs macOS"
    return {
        "images": names,
        "reference": "PyTorch (trained model); compared: the torch model that was converted"
                     + (" (calibrated int8)" if precision == "int8" else ""),
        **result,
        "agreement_kind": "pixels with the same argmax" if variant.task == "seg" else "top-1 agreement",
        "tolerance": tol,
        "structure": structure,
        "weights": weights,
        "numerics": numerics,
        "passed": passed,
    }


def verify_artifact(artifact_dir: Path) -> dict:
    """Re-run the verification of an existing artifact directory."""
    from edgekit.artifacts import read_manifest, sha256
    from edgekit.export import source_model
    from edgekit.registry import get_variant

    artifact_dir = Path(artifact_dir)
    manifest = read_manifest(artifact_dir)
    model_file = artifact_dir / manifest["model_file"]
    if not model_file.exists():
        raise EdgekitError(f"{model_file} is missing")
    if sha256(model_file) != manifest["sha256"]:
        raise EdgekitError(f"{model_file} does not match the sha256 in its manifest (modified after export?)")
    source = manifest["source"]
    weights = source.get("weights")
    if weights is not None:
        if not Path(weights).is_file():
            raise EdgekitError(f"the checkpoint this artifact came from is gone: {weights}")
        if sha256(Path(weights)) != source["sha256"]:
            raise EdgekitError(f"{weights} changed since the export (sha256 differs)")
    variant = get_variant(manifest["variant"])
    reference, _ = source_model(variant, tuple(manifest["resolution"]), Path(weights) if weights else None)
    return {"artifact_dir": str(artifact_dir), "variant": variant.name, "target": manifest["target"],
            "precision": manifest["precision"], "verification": verify_model(model_file, manifest, reference),
            "random_weights": weights is None}
