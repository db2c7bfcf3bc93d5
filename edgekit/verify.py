"""Verification: an artifact against the PyTorch model it came from, on photos it was never
calibrated on.

Runs after every export and again with `edgekit verify ARTIFACT_DIR` (which rebuilds the PyTorch
model from the manifest: the same checkpoint, checked by sha256, or the same seeded stand-in).
The images are the built-in verification photos (disjoint from the calibration photos), or the
user's own (`--verify-images DIR`); a photo that was used for calibration is refused unless the
user allows it, and then the report says so. The artifact's own outputs are compared where this
machine can run them (the target's host runner); where it cannot (CoreML needs macOS), the torch
model that was converted is compared instead and the report says the artifact was not run.
Each precision is held to the tolerance its target declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.metrics import compare, failures
from edgekit.runtime import DEFAULT_THREADS

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekit.manifest import Manifest

REFERENCE = "PyTorch (the source model, before any rewrite)"
STAND_IN_NOTE = ("random stand-in weights: their classes are nearly tied, so the agreement understates what a "
                 "trained model keeps and its bar is not applied; SQNR is the meaningful number")


@dataclass(frozen=True)
class VerificationSet:
    paths: tuple[Path, ...]
    records: tuple[dict, ...]  # name, sha256, rgb_sha256 per photo
    source: str  # "built-in verification photos" or the user's folder
    overlap: tuple[str, ...] = ()  # photos also used for calibration (only when allowed)


def verification_set(variant, folder: Path | None, calibration: tuple[dict, ...] | list[dict],
                     allow_calibration_images: bool = False) -> VerificationSet:
    """The photos to verify on, refusing any that was used for calibration unless allowed."""
    from edgekit.calibration.images import describe, image_files, verification_images

    paths = image_files(folder) if folder is not None else verification_images(variant.dataset)
    records = tuple(describe(p) for p in paths)
    seen = {h for c in calibration for h in (c.get("sha256"), c.get("rgb_sha256")) if h}
    overlap = tuple(r["name"] for r in records if r["sha256"] in seen or r["rgb_sha256"] in seen)
    if overlap and not allow_calibration_images:
        raise EdgekitError(f"{', '.join(overlap)} {'was' if len(overlap) == 1 else 'were'} used for calibration: "
                           "verify on other photos (--verify-images DIR), or pass --allow-calibration-images "
                           "to check on them anyway")
    source = "built-in verification photos" if folder is None else str(folder)
    return VerificationSet(tuple(paths), records, source, overlap)


def _fp32_noise_floor(reference: nn.Module, images: np.ndarray, expected: np.ndarray) -> float:
    """How far PyTorch's own fp32 output is from the exact (float64) function, as max rel error."""
    import torch

    from edgekit.reference import run_images

    exact = run_images(reference, images, torch.float64)
    return float(np.abs(expected.astype(np.float64) - exact).max() / max(np.abs(exact).max(), 1e-30))


PROXY = "the torch model that was converted"
PROXY_FP16 = "the torch model that was converted, run by PyTorch in fp16 (the arithmetic the device computes in)"
PROXY_INT8 = ("the calibrated torch model that was converted, its int8 quantisation simulated in fp32 (PyTorch's "
              "quantisers take no fp16; the device's fp16 arithmetic is not included)")


def _proxy_arithmetic(spec, precision: str) -> tuple[bool, str]:
    """(run in fp16, what that run is) for the torch model that was converted: the arithmetic the
    device computes in, since fp32 figures say nothing against an fp16 bar."""
    if precision in spec.plan.int8_activations:  # its quantisers run in fp32 only
        return False, PROXY_INT8
    if precision in spec.plan.fp16_compute:
        return True, PROXY_FP16
    return False, PROXY


def run_proxy(spec, manifest: Manifest, converted: nn.Module, images: np.ndarray) -> tuple[np.ndarray, str]:
    """(outputs, what produced them) of the torch model that was converted (`_proxy_arithmetic`)."""
    import torch

    from edgekit.reference import run_images

    fp16, what = _proxy_arithmetic(spec, manifest.precision)
    return run_images(converted, images, torch.float16 if fp16 else None), what


class ProxyRunner:
    """Where this machine cannot run an artifact (CoreML off macOS), its target's proxy, rebuilt from
    the manifest and the checkpoint it recorded, with the runner interface (NCHW in, NCHW out) and a
    label saying what ran."""

    def __init__(self, manifest: Manifest, why: str, weights: Path | None = None):
        from edgekit.reference import source_model, stand_in_kind
        from edgekit.registry import get_variant

        reference, _ = source_model(get_variant(manifest.variant), manifest.size, _checked_weights(manifest, weights),
                                    stand_in_kind(manifest.source))
        self.manifest = manifest
        self.model = manifest.spec.proxy(manifest, reference)
        self.label = f"{_proxy_arithmetic(manifest.spec, manifest.precision)[1]}: the artifact itself did not run ({why})"

    def run(self, images: np.ndarray, expected_nchw=None) -> np.ndarray:
        return run_proxy(self.manifest.spec, self.manifest, self.model, images)[0]


def _outputs(spec, model_file: Path, manifest: Manifest, reference: nn.Module, converted, images: np.ndarray,
             expected: np.ndarray, threads: int) -> tuple[np.ndarray, str, str | None, object]:
    """(outputs, what produced them, why the artifact itself was not run, the converted torch model)."""
    from edgekit.targets.base import NotRunnable

    try:
        runner = spec.runner(model_file, manifest, threads)
    except NotRunnable as e:
        if spec.proxy is None:
            raise
        converted = converted if converted is not None else spec.proxy(manifest, reference)
        return (*run_proxy(spec, manifest, converted, images), str(e), converted)
    got = runner.run(images, expected.shape)
    if spec.checks is not None and spec.proxy is not None and converted is None:
        converted = spec.proxy(manifest, reference)
    return got, f"the artifact, run by {spec.runner_label}", None, converted


def verify_model(model_file: Path, manifest: Manifest, reference: nn.Module, images: VerificationSet,
                 converted: nn.Module | None = None, threads: int = DEFAULT_THREADS) -> dict:
    """Compare the artifact with `reference` on `images`."""
    from edgekit.calibration.images import image_batch
    from edgekit.reference import run_images
    from edgekit.registry import get_variant

    spec = manifest.spec
    batch = image_batch(get_variant(manifest.variant), manifest.size, list(images.paths))
    expected = run_images(reference, batch)
    got, compared, not_run, converted = _outputs(spec, model_file, manifest, reference, converted, batch, expected,
                                                 threads)
    checks = spec.checks(model_file, manifest, converted, batch, expected) if spec.checks is not None else None
    return judge(manifest, reference, images, batch, expected, got, compared, not_run, checks)


def judge(manifest: Manifest, reference: nn.Module, images: VerificationSet, batch: np.ndarray, expected: np.ndarray,
          got: np.ndarray, compared: str, not_run: str | None = None, checks: dict | None = None,
          precision: str | None = None) -> dict:
    """The verification record of outputs `got` against PyTorch's `expected` on `images`, held to the
    tolerance of `precision` (default: the artifact's).

    An fp32 artifact held to a max rel error is held to twice PyTorch's own fp32 rounding error
    where that is larger: no fp32 artifact can be expected closer to PyTorch than PyTorch-fp32 is to
    the exact function, and deep random-weight stand-ins (B3) amplify rounding past 1e-4.
    """
    from edgekit.registry import get_variant

    spec = manifest.spec
    variant = get_variant(manifest.variant)
    if got.shape != expected.shape:
        raise EdgekitError(f"artifact output shape {got.shape} differs from PyTorch's {expected.shape}")
    result = compare(expected, got, variant.task, [r["name"] for r in images.records])
    for row, record in zip(result["images"], images.records):
        row.update(sha256=record["sha256"], rgb_sha256=record["rgb_sha256"])
    tol = spec.tolerance(precision or manifest.precision)
    tolerance = tol.as_dict()
    if tol.max_rel is not None:
        floor = _fp32_noise_floor(reference, batch, expected)
        tol = type(tol)(**{**tolerance, "max_rel": max(tol.max_rel, 2 * floor)})
        tolerance = {**tol.as_dict(), "max_rel_base": tolerance["max_rel"], "pytorch_fp32_noise": floor}
    # the pixel-agreement bars bind trained weights; a random stand-in's classes are nearly tied
    hold_agreement = not manifest.random_weights
    missed = failures(result, tol, variant.task, hold_agreement)
    if checks is not None and not checks["passed"]:
        missed.append(f"{spec.name} checks failed (see checks)")
    return {
        "reference": REFERENCE,
        "compared": compared,
        "artifact_run": not_run is None,
        "not_run": not_run,
        "image_set": images.source,
        "calibration_overlap": list(images.overlap),
        **result,
        "tolerance": tolerance,
        "agreement_held": hold_agreement,
        "failures": missed,
        "checks": checks,
        "passed": not missed,
        "note": STAND_IN_NOTE if manifest.random_weights else None,
    }


def _checked_weights(manifest: Manifest, weights: Path | None) -> Path | None:
    """The checkpoint to rebuild the reference from: the one given (checked against the sha256 the
    export recorded) or the recorded path; None for a stand-in."""
    from edgekit.artifacts import sha256

    recorded, digest = manifest.source.get("weights"), manifest.source.get("sha256")
    if digest is None:
        if weights is not None:
            raise EdgekitError("this artifact was exported from random stand-in weights, not a checkpoint: "
                               "drop --weights")
        return None
    path = Path(weights) if weights is not None else Path(recorded)
    if path.is_dir():  # a Hugging Face model folder: its weights file
        from edgekit.checkpoints import weights_file

        path = weights_file(path)[0]
    if not path.is_file():
        if weights is None:
            raise EdgekitError(f"the checkpoint this artifact came from is gone: {recorded} (moved? pass --weights "
                               "with its new path)")
        raise EdgekitError(f"checkpoint not found: {path}")
    if sha256(path) != digest:
        what = "is not the checkpoint this artifact came from" if weights is not None else "changed since the export"
        raise EdgekitError(f"{path} {what} (sha256 differs)")
    return path


def verify_artifact(artifact_dir: Path, verify_images: Path | None = None, weights: Path | None = None,
                    allow_calibration_images: bool = False, threads: int | None = None) -> dict:
    """Re-run the verification of an existing artifact directory (`threads`: PyTorch's and the host
    runner's; None: PyTorch's default and 2 for the runner)."""
    from edgekit.threads import torch_threads

    with torch_threads(threads):
        return _verify_artifact(Path(artifact_dir), verify_images, weights, allow_calibration_images,
                                threads or DEFAULT_THREADS)


def load_for_verification(artifact_dir: Path, verify_images: Path | None, weights: Path | None,
                          allow_calibration_images: bool) -> tuple[Manifest, nn.Module, VerificationSet]:
    """(manifest, the PyTorch model it came from, the photos to verify on), every input checked: the
    model file against its sha256, the checkpoint against the one exported from, the photos against
    the calibration set."""
    from edgekit.artifacts import sha256
    from edgekit.manifest import read_manifest
    from edgekit.reference import source_model, stand_in_kind
    from edgekit.registry import get_variant

    manifest = read_manifest(Path(artifact_dir))
    model_file = manifest.model_path
    if not model_file.exists():
        raise EdgekitError(f"{model_file} is missing")
    if sha256(model_file) != manifest.sha256:
        raise EdgekitError(f"{model_file} does not match the sha256 in its manifest (modified after export?)")
    checkpoint = _checked_weights(manifest, weights)
    variant = get_variant(manifest.variant)
    images = verification_set(variant, verify_images, manifest.calibration_images, allow_calibration_images)
    reference, _ = source_model(variant, manifest.size, checkpoint, stand_in_kind(manifest.source))
    return manifest, reference, images


def _verify_artifact(artifact_dir: Path, verify_images: Path | None, weights: Path | None,
                     allow_calibration_images: bool, threads: int) -> dict:
    manifest, reference, images = load_for_verification(artifact_dir, verify_images, weights,
                                                         allow_calibration_images)
    verification = verify_model(manifest.model_path, manifest, reference, images, threads=threads)
    return {"artifact_dir": str(artifact_dir), "variant": manifest.variant, "target": manifest.target,
            "precision": manifest.precision, "verification": verification, "random_weights": manifest.random_weights}


def require_passed(verification: dict) -> None:
    """VerificationFailed (exit 3) when the artifact is outside its tolerance."""
    from edgekit.errors import VerificationFailed

    if not verification["passed"]:
        layers = verification.get("layers")
        where = f"; {layers['line']} (every layer: {layers['command']})" if layers else ""
        raise VerificationFailed("verification failed: " + "; ".join(verification["failures"]) + where)
