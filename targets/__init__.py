"""The target table: one entry per output format, each declared in its own module or package
(targets/<name>.py or targets/<name>/, installed as edgekit.targets.<name>) as a `SPEC`, a
`TargetSpec` (targets/base.py), and registered here. `edgekit targets` prints it.

Generic code asks `get_target(name)` and never names a target; a name the table does not know is
a one-line error wherever it comes from (a flag, a manifest). `register` is the one way in: it checks
that the new target's option flags mean what the same flags mean for the others (base.check_options)
and that a harness name is one program, so a clash is an error at import, not a silent overwrite.
"""

from __future__ import annotations

from edgekit.android_harness.harnesses import Harness
from edgekit.errors import EdgekitError
from edgekit.targets import coreml, executorch, onnx, qnn, tflite
from edgekit.targets.base import TargetSpec, check_options, option_fields

TARGETS: dict[str, TargetSpec] = {}
DEFAULT_TARGET = "tflite"


def register(spec: TargetSpec) -> TargetSpec:
    """Add a target to the table (refused: a name already taken, a flag declared differently from
    another target's, a harness name another target uses for another program)."""
    if spec.name in TARGETS:
        raise EdgekitError(f"target {spec.name!r} is already in the table")
    check_options([*TARGETS.values(), spec])
    if spec.harness is not None:  # one name, one program (targets may run it their own way: flags, files)
        other = harnesses().get(spec.harness.name)
        program = lambda h: (h.binary, h.what, h.parse)  # noqa: E731
        if other is not None and program(other) != program(spec.harness):
            raise EdgekitError(f"target {spec.name}'s harness {spec.harness.name!r} is another program than the "
                               "one of that name already in the table")
    TARGETS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    TARGETS.pop(name, None)


def get_target(name: str, flag: str = "--target") -> TargetSpec:
    key = str(name).lower()
    if key not in TARGETS:
        raise EdgekitError(f"{flag} {name!r} is not one of: {', '.join(TARGETS)}")
    return TARGETS[key]


def harnesses() -> dict[str, Harness]:
    """Every phone program the table's targets are measured with, by name (`edgekit harness add --kind`)."""
    return {s.harness.name: s.harness for s in TARGETS.values() if s.harness is not None}


def get_harness(name: str) -> Harness:
    known = harnesses()
    if name not in known:
        raise EdgekitError(f"--kind {name!r} is not one of: {', '.join(known)}")
    return known[name]


def quiet_env() -> dict[str, str]:
    """What every target's frameworks read to stay quiet (edgekit.logs applies it)."""
    return {k: v for s in TARGETS.values() for k, v in s.quiet_env.items()}


def describe_table() -> list[dict]:
    """One row per target: what the README's table and `edgekit targets` show."""
    return [{"target": s.name, "summary": s.summary, "model_file": s.model_file, "precisions": list(s.precisions),
             "default_precision": s.default_precision, "host_runner": s.runner_label,
             "platform": s.packaging.platform if s.packaging else None,
             "profiler": s.harness.name if s.harness else None,
             "delegates": list(s.harness.delegates) if s.harness else [],
             "options": [f.metadata["flag"] for f in option_fields(s.options)]}
            for s in TARGETS.values()]


for _spec in (tflite.SPEC, onnx.SPEC, coreml.SPEC, qnn.SPEC, executorch.SPEC):
    register(_spec)
