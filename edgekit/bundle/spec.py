"""`model.json`: what an app needs to feed the model and read its output, taken from the artifact.

Both snippets (Kotlin, Swift) are generated from this dict, never from separate defaults, so a
bundle's code, its model.json and its model file cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

from edgekit import __version__
from edgekit.labels import palette
from edgekit.tiling import DEFAULT_OVERLAP as TILE_OVERLAP

FORMAT = "edgekit-bundle/1"


def _crop_ratio(manifest) -> float | None:
    from edgekit.calibration.images import CLS_CROP_RATIO

    return CLS_CROP_RATIO if manifest.task == "cls" else None


def _preprocessing(manifest) -> str:
    h, w = manifest.size
    if manifest.task == "sr":
        return (f"cut the photo into {w}x{h} tiles overlapping by {TILE_OVERLAP} pixels (past its edge, repeat the "
                "edge pixels)")
    if manifest.task == "seg":
        return f"resize the photo to {w}x{h} (width x height), no crop"
    ratio = _crop_ratio(manifest)
    return (f"crop the centre of the photo (a {w}:{h} box whose short side is {ratio:g} of the photo's short "
            f"side), resize it to {w}x{h}")


def _warnings(manifest) -> list[str]:
    """What the bundle's README, model.json and code header must say in capitals."""
    found = []
    v = manifest.verification
    if not v["passed"]:
        found.append("VERIFICATION FAILED: this model is outside its tolerance against PyTorch ("
                     + "; ".join(v.get("failures") or ["see the artifact's edgekit.json"]) + ")")
    if manifest.source.get("warning"):
        found.append(manifest.source["warning"])
    return found


def bundle_spec(manifest, model_path: Path, platform: str) -> dict:
    """The model.json of a bundle for `platform` from an artifact's manifest (edgekit.manifest.Manifest);
    the input/output description comes from the target's packaging entry."""
    h, w = manifest.size
    inp, out = manifest.spec.packaging.io(manifest, model_path)
    image_input = inp.pop("normalization_inside", False)
    norm = manifest.normalization
    seg, sr = manifest.task == "seg", manifest.task == "sr"
    scale = manifest.logits_shape()[2] // h if sr else None
    source = manifest.source
    verification = manifest.verification
    warnings = _warnings(manifest)
    return {
        "format": FORMAT,
        "generated_by": f"edgekit {__version__}",
        "platform": platform,
        "artifact": Path(model_path).parent.name,
        "variant": manifest.variant,
        "task": manifest.task,
        "dataset": manifest.dataset,
        "classes": manifest.classes,
        "target": manifest.target,
        "precision": manifest.precision,
        "model_file": manifest.model_file,
        "sha256": manifest.sha256,
        "weights": source.get("weights"),
        "warning": " / ".join(warnings) or None,
        "warnings": warnings,
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
            "semantics": manifest.output_semantics,
            "stride": manifest.output_stride,
            "height": h // manifest.output_stride if seg else h * scale if sr else None,
            "width": w // manifest.output_stride if seg else w * scale if sr else None,
            "decode": "argmax over the classes at each output pixel" if seg
            else (f"RGB of the x{scale} tile: clamp to [0, 1], x 255, round; blend overlapping tiles with linear "
                  "ramps across each overlap" if sr else
                  "the scores are logits: softmax for probabilities, the largest is the class"),
        },
        "tiling": {"scale": scale, "overlap": TILE_OVERLAP, "tile": [h, w]} if sr else None,
        "labels": "labels.txt",
        "palette": palette(manifest.dataset) if seg else None,
        "verification": {k: verification.get(k) for k in
                         ("passed", "failures", "sqnr_db_median", "sqnr_db_min", "agreement", "agreement_kind",
                          "reference", "compared", "not_run", "image_set")},
    }
