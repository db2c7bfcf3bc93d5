"""`edgekit package`: app-ready bundles (model, labels, model.json, a Kotlin or Swift snippet, a zip).

Which app platform an artifact packages for, and how its snippet is written, is its target's
`packaging` in the target table. A bundle is made only from an artifact whose model file still has
the sha256 its manifest recorded, so what the snippet describes is what ships, and only from one
that passed its verification unless the user allows a failed one (whose bundle then says so in
capitals everywhere). Bundle folders and zips are written atomically.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.artifacts import atomic_directory, check_writable, sha256, write_json
from edgekit.bundle.spec import bundle_spec
from edgekit.errors import EdgekitError
from edgekit.manifest import read_manifest

DEFAULT_OUTPUT = Path("edgekit-bundles")
# A fixed timestamp for every zip entry: the same bundle gives the same zip, byte for byte.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PackageOptions:
    artifacts: tuple[Path, ...]
    platform: str
    output: Path = DEFAULT_OUTPUT
    allow_failed: bool = False  # package an artifact that FAILED its verification (and say so)


def platforms() -> dict[str, list[str]]:
    """Each app platform and the targets that package for it (from the target table)."""
    from edgekit.targets import TARGETS

    found: dict[str, list[str]] = {}
    for spec in TARGETS.values():
        if spec.packaging is not None:
            found.setdefault(spec.packaging.platform, []).append(spec.name)
    return found


def _checked_manifest(artifact: Path, platform: str, allow_failed: bool):
    manifest = read_manifest(artifact)
    wanted = platforms()[platform]
    if manifest.target not in wanted:
        raise EdgekitError(f"{artifact} is a {manifest.target} artifact; --platform {platform} takes "
                           f"{' or '.join(wanted)} artifacts (edgekit export {manifest.variant} --target {wanted[0]})")
    model = manifest.model_path
    if not model.exists() or sha256(model) != manifest.sha256:
        raise EdgekitError(f"{model} is missing or changed since export (sha256 differs from {artifact.name}"
                           "/edgekit.json): export it again")
    if not manifest.verification["passed"] and not allow_failed:
        reasons = "; ".join(manifest.verification.get("failures") or ["see its edgekit.json"])
        raise EdgekitError(f"{artifact} FAILED its verification ({reasons}): fix the export, or pass --allow-failed "
                           "to package it anyway (the bundle will say so)")
    return manifest


def _verification_line(v: dict) -> str:
    verdict = "passed" if v["passed"] else "FAILED"
    sqnr = f"SQNR median {v['sqnr_db_median']:.1f} dB, min {v['sqnr_db_min']:.1f} dB on {v['image_set']}"
    line = f"Verified at export against {v['reference']}: {verdict} ({v['compared']}: {sqnr}"
    if v.get("not_run"):  # the artifact's own outputs were not computed (CoreML on Linux)
        line += f"; the model file's own outputs were not run: {v['not_run']}"
    return line + ")."


def _readme(spec: dict, snippet_file: str, compiled: str | None) -> str:
    inp, out = spec["input"], spec["output"]
    lines = [
        f"# {spec['variant']} ({spec['precision']}) for {spec['platform']}",
        "",
        f"Made by {spec['generated_by']} from the artifact {spec['artifact']}.",
        *([f"**WARNING: {w}**" for w in spec["warnings"]] + [""]),
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


def _write_bundle(manifest, platform: str, folder: Path) -> tuple[dict, str | None]:
    model = manifest.model_path
    packaging = manifest.spec.packaging
    spec = bundle_spec(manifest, model, platform)
    if model.is_dir() and packaging.app_files is not None:  # only what the app loads
        spec["model_files"] = {}  # what ships, each with its sha256 (the artifact's sha256 covers all of model)
        for rel in packaging.app_files(manifest):
            (folder / model.name / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(model / rel, folder / model.name / rel)
            spec["model_files"][rel] = sha256(model / rel)
    elif model.is_dir():
        shutil.copytree(model, folder / model.name)
    else:
        shutil.copy2(model, folder / model.name)
    shutil.copy2(Path(manifest.artifact_dir) / manifest.labels, folder / spec["labels"])
    snippet_file, code = packaging.snippet(spec, manifest)
    compiled = packaging.compile(folder / model.name, folder) if packaging.compile else None
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
    known = platforms()
    if opts.platform not in known:
        raise EdgekitError(f"--platform {opts.platform!r} is not one of: {', '.join(known)}")
    if not opts.artifacts:
        raise EdgekitError("give at least one artifact directory (edgekit export writes them)")
    # all checked before anything is written
    manifests = [_checked_manifest(Path(a), opts.platform, opts.allow_failed) for a in opts.artifacts]
    output = Path(opts.output)
    check_writable(output)
    records = []
    for artifact, manifest in zip(map(Path, opts.artifacts), manifests):
        name = f"{artifact.name}-{opts.platform}"
        progress(f"packaging {artifact.name} for {opts.platform}")
        with atomic_directory(output / name) as tmp:
            spec, compiled = _write_bundle(manifest, opts.platform, tmp)
        _zip(output / name, output / f"{name}.zip")
        records.append({
            "artifact": str(artifact), "platform": opts.platform, "target": manifest.target,
            "variant": manifest.variant, "precision": manifest.precision, "bundle": str(output / name),
            "zip": str(output / f"{name}.zip"),
            "files": sorted(str(p.relative_to(output / name)) for p in (output / name).iterdir()),
            "snippet": spec["snippet"], "compiled_model": compiled, "random_weights": manifest.random_weights,
            "verified": manifest.verification["passed"],
        })
    return records
