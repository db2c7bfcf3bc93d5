"""The target table: one entry per output format, each declared in its own module (targets/<name>.py)
as a `TargetSpec` (targets/base.py). `edgekit targets` prints it.

Generic code asks `get_target(name)` and never names a target; a name the table does not know is
a one-line error wherever it comes from (a flag, a manifest).
"""

from __future__ import annotations

from edgekit.errors import EdgekitError
from edgekit.targets import coreml, executorch, onnx, qnn, tflite
from edgekit.targets.base import TargetSpec, option_fields

TARGETS: dict[str, TargetSpec] = {spec.name: spec for spec in (tflite.SPEC, onnx.SPEC, coreml.SPEC, qnn.SPEC, executorch.SPEC)}
DEFAULT_TARGET = "tflite"


def get_target(name: str, flag: str = "--target") -> TargetSpec:
    key = str(name).lower()
    if key not in TARGETS:
        raise EdgekitError(f"{flag} {name!r} is not one of: {', '.join(TARGETS)}")
    return TARGETS[key]


def describe_table() -> list[dict]:
    """One row per target: what the README's table and `edgekit targets` show."""
    return [{"target": s.name, "summary": s.summary, "model_file": s.model_file, "precisions": list(s.precisions),
             "default_precision": s.default_precision, "host_runner": s.runner_label,
             "platform": s.packaging.platform if s.packaging else None, "profiler": s.profiler,
             "options": [f.metadata["flag"] for f in option_fields(s.options)]}
            for s in TARGETS.values()]
