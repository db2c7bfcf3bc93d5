"""`edgekit.json`: the typed manifest of an artifact directory, with a schema version and one reader.

Every command that takes an artifact reads it through `read_manifest`, which turns bad JSON, an old
schema, a missing or mistyped key, or a target the table does not know into one `ManifestError`
line naming the file, never a `KeyError` traceback.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import ManifestError

MANIFEST = "edgekit.json"
SCHEMA = 2  # 2: target table (target_options, target_info), held-out verification with SQNR


@dataclass
class Manifest:
    schema: int
    edgekit_version: str
    variant: str
    family: str
    task: str
    dataset: str
    classes: int
    resolution: list
    target: str
    precision: str
    target_options: dict
    model_file: str
    file_bytes: int
    sha256: str
    io: dict
    normalization: dict
    output_semantics: str
    output_stride: int | None
    labels: str
    rewrites: list
    source: dict
    calibration: dict | None
    ops: dict
    target_info: dict
    tools: dict
    verification: dict
    export_seconds: float | None = None
    evaluation: dict | None = None  # export --eval-data: the task metric against PyTorch (edgekit.eval)
    device_verifications: list | None = None  # `verify --device`: each phone's own run (edgekit.ondevice)
    # where the artifact is on disk: known when read or written, never stored
    artifact_dir: str | None = field(default=None, metadata={"stored": False})
    replaced: str | None = field(default=None, metadata={"stored": False})  # export: what it replaced

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.resolution[0]), int(self.resolution[1]))

    def logits_shape(self) -> list[int]:
        """The NCHW output of one image (the variant's, at the recorded resolution)."""
        from edgekit.registry import get_variant

        return list(get_variant(self.variant).logits_shape(self.size))

    @property
    def random_weights(self) -> bool:
        return self.source.get("weights") is None and self.source.get("sha256") is None

    @property
    def spec(self):
        """The target's table entry (the reader has checked the target exists)."""
        from edgekit.targets import TARGETS

        return TARGETS[self.target]

    @property
    def model_path(self) -> Path:
        if self.artifact_dir is None:
            raise ManifestError("this manifest was not read from an artifact directory")
        return Path(self.artifact_dir) / self.model_file

    @property
    def calibration_images(self) -> list[dict]:
        return list((self.calibration or {}).get("images") or [])

    def stored(self) -> dict:
        """What goes into edgekit.json."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("stored", True)}

    def to_dict(self) -> dict:
        """The stored fields plus where the artifact is (and what an export replaced): what --json prints."""
        return {**self.stored(), "artifact_dir": self.artifact_dir, "replaced": self.replaced}


# JSON types each stored field must have (None allowed where the dataclass says `| None`)
_TYPES: dict[str, tuple[type, ...]] = {
    "schema": (int,), "edgekit_version": (str,), "variant": (str,), "family": (str,), "task": (str,),
    "dataset": (str,), "classes": (int,), "resolution": (list,), "target": (str,), "precision": (str,),
    "target_options": (dict,), "model_file": (str,), "file_bytes": (int,), "sha256": (str,), "io": (dict,),
    "normalization": (dict,), "output_semantics": (str,), "output_stride": (int, type(None)), "labels": (str,),
    "rewrites": (list,), "source": (dict,), "calibration": (dict, type(None)), "ops": (dict,),
    "target_info": (dict,), "tools": (dict,), "verification": (dict,), "export_seconds": (int, float, type(None)),
    "evaluation": (dict, type(None)), "device_verifications": (list, type(None)),
}
_OPTIONAL = {"export_seconds", "evaluation", "device_verifications"}


def manifest_from_dict(data: Any, where: str) -> Manifest:
    """Validate a parsed edgekit.json; `where` names the file in errors."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where} is not an edgekit manifest (a JSON object is expected)")
    schema = data.get("schema")
    if schema != SCHEMA:
        found = "no schema version (edgekit 0.1's format)" if schema is None else f"schema {schema!r}"
        raise ManifestError(f"{where} has {found}; this edgekit reads schema {SCHEMA}: export the artifact again")
    for key, types in _TYPES.items():
        if key not in data:
            if key in _OPTIONAL:
                continue
            raise ManifestError(f"{where} is missing the key {key!r}: export the artifact again")
        if not isinstance(data[key], types) or (isinstance(data[key], bool) and bool not in types):
            raise ManifestError(f"{where}: {key!r} should be {' or '.join(t.__name__ for t in types)}, "
                                f"not {type(data[key]).__name__}")
    from edgekit.targets import TARGETS

    if data["target"] not in TARGETS:
        raise ManifestError(f"{where} names the target {data['target']!r}, which this edgekit does not know "
                            f"(known: {', '.join(TARGETS)})")
    if len(data["resolution"]) != 2:
        raise ManifestError(f"{where}: 'resolution' should be [height, width]")
    if "passed" not in data["verification"]:
        raise ManifestError(f"{where}: the verification has no result ('passed')")
    return Manifest(**{k: data[k] for k in _TYPES if k in data})


def _export_first(name: str) -> str:
    """For a variant's name given where an artifact directory is wanted: how to make one."""
    from edgekit.artifacts import ARTIFACTS_DIR
    from edgekit.errors import EdgekitError
    from edgekit.registry import get_variant

    try:
        variant = get_variant(name)
    except EdgekitError:  # not a variant's name: nothing to add
        return ""
    return (f": it is a variant, not an artifact; export it first (edgekit export {name}), then give the "
            f"directory it writes under ./{ARTIFACTS_DIR}/ ({variant.name}-...)")


def read_manifest(artifact_dir: Path) -> Manifest:
    artifact_dir = Path(artifact_dir)
    path = artifact_dir / MANIFEST
    if not artifact_dir.exists():
        raise ManifestError(f"{artifact_dir} not found{_export_first(str(artifact_dir))}")
    if not path.is_file():
        hint = ""
        if artifact_dir.is_dir() and any(artifact_dir.glob(f"*/{MANIFEST}")):
            hint = " (it holds artifact directories: pass those, or the folder to commands that take one)"
        raise ManifestError(f"{artifact_dir} is not an edgekit artifact (no {MANIFEST}){hint}")
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path} is not text ({e.reason})") from e
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path} is not valid JSON ({e})") from e
    manifest = manifest_from_dict(data, str(path))
    manifest.artifact_dir = str(artifact_dir)
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> None:
    from edgekit.artifacts import write_json

    write_json(Path(folder) / MANIFEST, manifest.stored())
