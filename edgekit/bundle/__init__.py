"""`edgekit package`: app-ready bundles (model, labels, model.json, a Kotlin or Swift snippet, a zip).

A bundle is made only from an artifact whose model file still has the sha256 its manifest recorded,
so what the snippet describes is what ships. Bundle folders and zips are written atomically.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.artifacts import atomic_directory, check_writable, read_manifest, sha256, write_json
from edgekit.bundle import kotlin, swift
from edgekit.bundle.spec import bundle_spec
from edgekit.errors import EdgekitError

PLATFORMS = {"android": "tflite", "ios": "coreml"}
DEFAULT_OUTPUT = Path("edgekit-bundles")
# A fixed timestamp for every zip entry: the same bundle gives the same zip, byte for byte.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PackageOptions:
    artifacts: tuple[Path, ...]
    platform: str
    output: Path = DEFAULT_OUTPUT


def _checked_manifest(artifact: Path, platform: str) -> dict:
    manifest = read_manifest(artifact)
    wanted = PLATFORMS[platform]
    if manifest["target"] != wanted:
        raise EdgekitError(f"{artifact} is a {manifest['target']} artifact; --platform {platform} takes {wanted} "
                           f"artifacts (edgekit export {manifest['variant']} --target {wanted})")
    model = artifact / manifest["model_file"]
    if not model.exists() or sha256(model) != manifest["sha256"]:
        raise EdgekitError(f"{model} is missing or changed since export (sha256 differs from {artifact.name}"
                           "/edgekit.json): export it again")
    return manifest


def _verification_line(v: dict) -> str:
    verdict = "passed" if v["passed"] else "FAILED"
    psnr = f"PSNR {v['psnr_db']:.1f} dB" if v.get("psnr_db") is not None else "no PSNR"
    if v.get("numerics"):  # CoreML on Linux: the package's own outputs were not computed
        return (f"Verified at export: {verdict} (structure and weights of the package; the torch model that was "
                f"converted vs PyTorch: {psnr}; the package's own outputs: {v['numerics']}).")
    return f"Verified against PyTorch at export: {verdict}, {psnr}."


def _readme(spec: dict, snippet_file: str, compiled: str | None) -> str:
    inp, out = spec["input"], spec["output"]
    lines = [
        f"# {spec['variant']} ({spec['precision']}) for {spec['platform']}",
        "",
        f"Made by {spec['generated_by']} from the artifact {spec['artifact']}.",
        *([f"**WARNING: {spec['warning']}**", ""] if spec["warning"] else [""]),
        f"- `{spec['model_file']}` (sha256 {spec['sha256'][:16]}...)",
        f"- `{spec['labels']}`: {spec['classes']} class names in output order",
        "- `model.json`: input, normalisation, output and verification, for code that wants to read them",
        f"- `{snippet_file}`: a class that preprocesses a photo, runs the model and decodes the output",
        "",
        f"Input `{inp['name']}`: {'x'.join(map(str, inp['shape']))} {inp['layout']} {inp['dtype']}; "
        f"{inp['preprocessing']}; normalisation {inp['normalization']['applied']}.",
        f"Output `{out['name']}`: {spec['output']['semantics']}; {out['decode']}.",
        "",
        _verification_line(spec["verification"]),
    ]
    if compiled:
        lines.append(f"Compiled model: {compiled}.")
    return "\n".join(lines) + "\n"


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


def _write_bundle(artifact: Path, manifest: dict, platform: str, folder: Path) -> tuple[dict, str | None]:
    model = artifact / manifest["model_file"]
    spec = bundle_spec(manifest, model, platform)
    copy = shutil.copytree if model.is_dir() else shutil.copy2
    copy(model, folder / model.name)
    shutil.copy2(artifact / manifest["labels"], folder / spec["labels"])
    compiled = None
    if platform == "android":
        snippet_file, code = kotlin.FILE_NAME, kotlin.snippet(spec)
    else:
        snippet_file = swift.FILE_NAME
        code = swift.snippet(spec, image_input=manifest["coreml"]["input"] == "image")
        compiled = _compile_mlmodelc(folder / model.name, folder)
    spec["snippet"] = snippet_file
    spec["compiled_model"] = compiled
    (folder / snippet_file).write_text(code)
    write_json(folder / "model.json", spec)
    (folder / "README.md").write_text(_readme(spec, snippet_file, compiled))
    return spec, compiled


def _zip(folder: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(f"{folder.name}/{file.relative_to(folder)}", ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, file.read_bytes())
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def package(opts: PackageOptions, progress: Progress = lambda _m: None) -> list[dict]:
    """One bundle folder and one zip per artifact; returns what each contains."""
    if opts.platform not in PLATFORMS:
        raise EdgekitError(f"--platform {opts.platform!r} is not one of: {', '.join(PLATFORMS)}")
    if not opts.artifacts:
        raise EdgekitError("give at least one artifact directory (edgekit export writes them)")
    manifests = [_checked_manifest(Path(a), opts.platform) for a in opts.artifacts]  # all checked before writing
    output = Path(opts.output)
    check_writable(output)
    records = []
    for artifact, manifest in zip(map(Path, opts.artifacts), manifests):
        name = f"{artifact.name}-{opts.platform}"
        progress(f"packaging {artifact.name} for {opts.platform}")
        with atomic_directory(output / name) as tmp:
            spec, compiled = _write_bundle(artifact, manifest, opts.platform, tmp)
        _zip(output / name, output / f"{name}.zip")
        records.append({
            "artifact": str(artifact), "platform": opts.platform, "variant": manifest["variant"],
            "precision": manifest["precision"], "bundle": str(output / name), "zip": str(output / f"{name}.zip"),
            "files": sorted(str(p.relative_to(output / name)) for p in (output / name).iterdir()),
            "snippet": spec["snippet"], "compiled_model": compiled,
            "random_weights": manifest["source"].get("weights") is None,
            "verified": manifest["verification"]["passed"],
        })
    return records
