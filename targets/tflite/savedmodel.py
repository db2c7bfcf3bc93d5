"""ONNX -> SavedModel and the float .tflite files, by onnx2tf, offline.

onnx2tf fetches a sample-image .npy from the internet whenever a model has one NHWC image input,
unless a file of that exact name is in the working directory: edgekit writes one made from its
built-in calibration photos there and runs onnx2tf in that directory.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError, first_line
from edgekit.targets.tflite.options import Layout

ONNX2TF_SAMPLE_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"


ONNX2TF_SAMPLE_SHAPE = (20, 128, 128, 3)


@contextlib.contextmanager
def _working_directory(path: Path):
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def write_onnx2tf_sample(path: Path, images_nhwc01: np.ndarray) -> Path:
    """The file onnx2tf would otherwise download: 20 RGB images 128x128 in [0, 1], NHWC float32."""
    import tensorflow as tf

    reps = -(-ONNX2TF_SAMPLE_SHAPE[0] // len(images_nhwc01))
    batch = np.concatenate([images_nhwc01] * reps)[: ONNX2TF_SAMPLE_SHAPE[0]]
    sample = tf.image.resize(batch, ONNX2TF_SAMPLE_SHAPE[1:3]).numpy().astype(np.float32)
    np.save(path / ONNX2TF_SAMPLE_NAME, np.clip(sample, 0.0, 1.0))
    return path / ONNX2TF_SAMPLE_NAME


def run_onnx2tf(onnx_path: Path, workdir: Path, layout: Layout, input_name: str, sample_nhwc01: np.ndarray) -> Path:
    """onnx2tf in `workdir` (with the local sample file); returns its output folder."""
    import onnx2tf

    from edgekit.logs import captured

    write_onnx2tf_sample(workdir, sample_nhwc01)
    out = workdir / "onnx2tf"
    log = io.StringIO()
    with _working_directory(workdir), contextlib.redirect_stdout(log), captured("onnx2tf", log):
        try:
            onnx2tf.convert(
                input_onnx_file_path=str(onnx_path),
                output_folder_path=str(out),
                copy_onnx_input_output_names_to_tflite=True,
                output_signaturedefs=True,
                not_use_onnxsim=True,  # edgekit has simplified it already
                non_verbose=True,
                # Strict mode stays on: without it onnx2tf mis-converts the Microsoft models (6 dB
                # PSNR on m0-cls). It crashes on scalar Mul constants, so the deploy form has none.
                disable_strict_mode=False,
                keep_ncw_or_nchw_or_ncdhw_input_names=[input_name] if layout is Layout.NCHW else None,
            )
        except SystemExit as e:  # onnx2tf reports some failures by exiting
            raise EdgekitError(f"onnx2tf failed ({e}); rerun with --debug for its log", log=log.getvalue()) from e
        except Exception as e:
            raise EdgekitError(f"onnx2tf failed: {first_line(e)}; rerun with --debug for its log", log=log.getvalue()) from e
    return out


def _sample_nhwc01(dataset: str, size) -> np.ndarray:
    """onnx2tf's sample images, from the calibration photos (never the verification ones)."""
    from PIL import Image

    from edgekit.calibration.images import calibration_images, load_rgb

    images = [load_rgb(p) for p in calibration_images(dataset)]
    return np.stack([np.asarray(im.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32) / 255
                     for im in images])
