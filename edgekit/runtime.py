"""Running an artifact on this machine, through its target's host runner (the target table's
`runner`): every runner takes NCHW float32 images, already normalised, and returns NCHW float32
outputs, so one comparison and one decoder serve every target."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import EdgekitError

DEFAULT_THREADS = 2


def open_runner(manifest, threads: int = DEFAULT_THREADS):
    """The host runner for an artifact read with edgekit.manifest.read_manifest (its model file
    checked against the manifest's sha256 first). Raises targets.base.NotRunnable where this
    machine cannot run the target."""
    from edgekit.artifacts import sha256

    model_file = Path(manifest.model_path)
    if not model_file.exists():
        raise EdgekitError(f"{model_file} is missing")
    if sha256(model_file) != manifest.sha256:
        raise EdgekitError(f"{model_file} does not match the sha256 in its manifest (modified after export?)")
    return manifest.spec.runner(model_file, manifest, threads)
