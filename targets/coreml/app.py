"""CoreML in an iPhone app: the bundle's I/O, the Swift snippet, and the compiled .mlmodelc (Xcode's
compiler, macOS only)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import EdgekitError
from edgekit.targets.coreml.checks import output_arrays

if TYPE_CHECKING:
    pass


def _bundle_io(manifest, model_path: Path) -> tuple[dict, dict]:
    io = manifest.io
    inp = {"name": io["input"]["name"], "shape": io["input"]["shape"], "layout": "NCHW",
           "dtype": io["input"]["dtype"], "quantization": None,
           # an image input takes pixels: /255 and mean/std are ops inside the model
           "normalization_inside": manifest.target_options.get("input") == "image"}
    names = [o["name"] for o in io["output"]]
    if manifest.task == "cls":
        out = {"name": names[0], "scores": names[1], "shape": None, "layout": None, "dtype": "string",
               "quantization": None}
    else:
        array = output_arrays(model_path)[names[0]]
        out = {"name": names[0], "shape": array["shape"], "layout": "NCHW", "dtype": array["dtype"],
               "quantization": None}
    return inp, out


def _snippet(spec: dict, manifest) -> tuple[str, str]:
    from edgekit.bundle import swift

    return swift.FILE_NAME, swift.snippet(spec, image_input=manifest.target_options.get("input") == "image")


def _compile_mlmodelc(package: Path, folder: Path) -> str:
    """Xcode's coremlcompiler, on macOS only; elsewhere say why there is none."""
    if sys.platform != "darwin" or shutil.which("xcrun") is None:
        return "not built: compiling to .mlmodelc needs macOS with Xcode (xcrun coremlcompiler); Xcode compiles " \
               "the .mlpackage itself when it is added to an app target"
    done = subprocess.run(["xcrun", "coremlcompiler", "compile", str(package), str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise EdgekitError(f"xcrun coremlcompiler failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return f"{package.stem}.mlmodelc"
