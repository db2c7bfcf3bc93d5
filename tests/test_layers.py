"""The architecture, checked from the code: one installed package, layers whose arrows point down
(a lazy import inside a function is an arrow too), no circle, and the phone layer knowing no target."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# repository folder -> installed package
FOLDERS = {"edgekit": "edgekit", "targets": "edgekit.targets", "calibration": "edgekit.calibration",
           "android_harness": "edgekit.android_harness"}
# bottom to top; a module may import its own layer and the ones below, never above
CORE, TARGETS, ORCHESTRATION, CLI = range(4)
LAYER_NAMES = ("core", "targets", "orchestration", "CLI")
ORCHESTRATION_MODULES = {"export", "verify", "runtime", "inspect", "predict", "predict_sr", "package", "profile",
                         "sweep", "sweep_plot", "manifest", "info", "report", "eval", "phones", "ondevice",
                         "layer_debug", "debug_plot", "cluster"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if folder == "edgekit" and parts and parts[0] in ("targets", "calibration", "android_harness"):
                continue
            found[name] = path
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return CORE  # edgekit/__init__: the version
    head = parts[1]
    if head == "targets":
        return TARGETS
    if head in ("cli", "__main__"):
        return CLI
    return ORCHESTRATION if head in ORCHESTRATION_MODULES else CORE


def _imports(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """Every edgekit module `path` imports, at the top or inside a function."""
    out = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {m: _imports(p, m, known) for m, p in known.items()}


def test_no_module_imports_the_old_top_level_names():
    old = ("targets", "calibration", "android_harness")
    found = []
    for folder in (*FOLDERS, "tests", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                found += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in old]
    assert found == []


def test_arrows_point_down_and_never_circle():
    graph = _graph()
    upward = [f"{m} ({LAYER_NAMES[_layer(m)]}) imports {d} ({LAYER_NAMES[_layer(d)]})"
              for m, deps in graph.items() for d in sorted(deps) if _layer(d) > _layer(m)]
    assert upward == []
    # no circle: a depth-first walk never meets a module still on its path
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            assert state.get(d) != 1, "import circle: " + " -> ".join([*path, m, d])
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_the_phone_layer_knows_no_target():
    graph = _graph()
    for m, deps in graph.items():
        if m.startswith("edgekit.android_harness"):
            assert not [d for d in deps if d.startswith("edgekit.targets")], m
    text = "\n".join(p.read_text() for p in (REPO / "android_harness").rglob("*.py"))
    assert "target_info[" not in text and "edgekit.targets" not in text


def test_the_layer_check_sees_an_upward_arrow(tmp_path):
    """The check itself: a core module importing the table (as deploy once did) is an upward arrow."""
    known = {"edgekit.deploy": tmp_path / "deploy.py", "edgekit.targets": tmp_path / "t.py"}
    known["edgekit.deploy"].write_text("def f():\n    from edgekit.targets import get_target\n")
    deps = _imports(known["edgekit.deploy"], "edgekit.deploy", known)
    assert deps == {"edgekit.targets"} and _layer("edgekit.targets") > _layer("edgekit.deploy")


@pytest.mark.parametrize("name,importable", [("targets", False), ("calibration", False), ("android_harness", False),
                                             ("edgekit.targets", True), ("edgekit.calibration", True),
                                             ("edgekit.android_harness.profiles", True)])
def test_only_edgekit_is_importable_from_another_folder(tmp_path, name, importable):
    done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode == 0) is importable, done.stderr
    if not importable:
        assert f"No module named '{name}'" in done.stderr
