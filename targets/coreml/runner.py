"""Running a CoreML package: Core ML's own predict, which exists on macOS only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.targets.base import (
    NotRunnable,
)
from edgekit.targets.coreml.options import INPUT_NAME

if TYPE_CHECKING:
    pass


def can_predict() -> bool:
    return sys.platform == "darwin"


def predict(path: Path, images: np.ndarray, mean, std, image_input: bool, labels: list[str] | None) -> np.ndarray:
    """The package's own outputs on normalised (N, 3, H, W) images: CoreML prediction, macOS only
    (written against coremltools' documented API; no Mac runs it in edgekit's CI).
    Image inputs get the 8-bit RGB pictures the normalised images came from; a classifier's
    per-label scores come back in label order."""
    import coremltools as ct
    from PIL import Image

    ml = ct.models.MLModel(str(path))
    description = ml.get_spec().description
    name = description.predictedProbabilitiesName or description.output[0].name
    outs = []
    for x in images:
        if image_input:
            rgb = (x * np.array(std).reshape(3, 1, 1) + np.array(mean).reshape(3, 1, 1)) * 255
            feed = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0))
        else:
            feed = x[None].astype(np.float32)
        out = ml.predict({INPUT_NAME: feed})[name]
        outs.append(np.array([out[label] for label in labels])[None] if isinstance(out, dict) else out)
    return np.concatenate(outs).astype(np.float32)


class CoreMLRunner:
    def __init__(self, model_file: Path, manifest):
        from edgekit.labels import class_names
        from edgekit.registry import get_variant

        if not can_predict():
            raise NotRunnable("CoreML prediction needs macOS")
        variant = get_variant(manifest.variant)
        self.path, self.variant = model_file, variant
        self.image_input = manifest.target_options.get("input") == "image"
        self.labels = class_names(variant) if variant.task == "cls" else None

    def run(self, images: np.ndarray, expected_nchw=None) -> np.ndarray:
        v = self.variant
        return predict(self.path, images, v.mean, v.std, self.image_input, self.labels)


def _runner(model_file: Path, manifest, threads: int = 2) -> CoreMLRunner:
    return CoreMLRunner(model_file, manifest)


def _taps(job):
    """Core ML's intermediate tensors: off macOS nothing runs the package (its PyTorch proxy is debugged
    instead, said so); on macOS edgekit does not yet add outputs to the package's MIL program."""
    if not can_predict():
        raise NotRunnable("CoreML prediction needs macOS")
    raise NotRunnable("edgekit does not read a Core ML package's intermediate tensors (it would add outputs to "
                      "its MIL program)")
