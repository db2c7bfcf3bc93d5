"""`model.json`: what an app needs to feed the model and read its output, taken from the artifact.

Both snippets (Kotlin, Swift) are generated from this dict, never from separate defaults, so a
bundle's code, its model.json and its model file cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

from edgekit import __version__
from edgekit.labels import palette

FORMAT = "edgekit-bundle/1"


def _crop_ratio(manifest: dict) -> float | None:
    from calibration.images import CLS_CROP_RATIO

    return CLS_CROP_RATIO if manifest["task"] == "cls" else None


def _preprocessing(manifest: dict) -> str:
    h, w = manifest["resolution"]
    if manifest["task"] == "seg":
        return f"resize the photo to {w}x{h} (width x height), no crop"
    ratio = _crop_ratio(manifest)
    return (f"crop the centre of the photo (a {w}:{h} box whose short side is {ratio:g} of the photo's short "
            f"side), resize it to {w}x{h}")


def _tflite_io(manifest: dict) -> tuple[dict, dict]:
    io = manifest["io"]
    inp = {k: io["input"][k] for k in ("name", "shape", "layout", "dtype", "quantization")}
    out = {k: io["output"][k] for k in ("name", "shape", "layout", "dtype", "quantization")}
    return inp, out


def _coreml_io(manifest: dict, model_path: Path) -> tuple[dict, dict]:
    from targets.coreml import output_arrays

    io = manifest["io"]
    inp = {"name": io["input"]["name"], "shape": io["input"]["shape"], "layout": "NCHW",
           "dtype": io["input"]["dtype"], "quantization": None}
    names = [o["name"] for o in io["output"]]
    if manifest["task"] == "cls":
        out = {"name": names[0], "scores": names[1], "shape": None, "layout": None, "dtype": "string",
               "quantization": None}
    else:
        array = output_arrays(model_path)[names[0]]
        out = {"name": names[0], "shape": array["shape"], "layout": "NCHW", "dtype": array["dtype"],
               "quantization": None}
    return inp, out


def bundle_spec(manifest: dict, model_path: Path, platform: str) -> dict:
    """The model.json of a bundle for `platform` ("android" or "ios") from an artifact's manifest."""
    h, w = manifest["resolution"]
    if manifest["target"] == "coreml":
        inp, out = _coreml_io(manifest, model_path)
        image_input = manifest["coreml"]["input"] == "image"
    else:
        inp, out = _tflite_io(manifest)
        image_input = False
    norm = manifest["normalization"]
    seg = manifest["task"] == "seg"
    source = manifest["source"]
    verification = manifest["verification"]
    return {
        "format": FORMAT,
        "generated_by": f"edgekit {__version__}",
        "platform": platform,
        "artifact": Path(model_path).parent.name,
        "variant": manifest["variant"],
        "task": manifest["task"],
        "dataset": manifest["dataset"],
        "classes": manifest["classes"],
        "target": manifest["target"],
        "precision": manifest["precision"],
        "model_file": manifest["model_file"],
        "sha256": manifest["sha256"],
        "weights": source.get("weights"),
        "warning": source.get("warning"),
        "input": {
            **inp,
            "height": h,
            "width": w,
            "color": norm["color"],
            "preprocessing": _preprocessing(manifest),
            "crop_ratio": _crop_ratio(manifest),
            "normalization": {
                "scale": norm["scale"], "mean": norm["mean"], "std": norm["std"],
                # CoreML image inputs take pixels: /255 and mean/std are ops inside the model
                "applied": "inside the model" if image_input else "by the app: (pixel * scale - mean) / std",
            },
        },
        "output": {
            **out,
            "semantics": manifest["output_semantics"],
            "stride": manifest["output_stride"],
            "height": h // manifest["output_stride"] if seg else None,
            "width": w // manifest["output_stride"] if seg else None,
            "decode": "argmax over the classes at each output pixel" if seg
            else "the scores are logits: softmax for probabilities, the largest is the class",
        },
        "labels": "labels.txt",
        "palette": palette(manifest["dataset"]) if seg else None,
        "verification": {k: verification.get(k) for k in
                         ("passed", "psnr_db", "argmax_agreement", "agreement_kind", "reference", "numerics")},
    }
