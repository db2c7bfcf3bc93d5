"""The docs say what the code does: every `edgekit ...` line in a code block of the README or docs/
names a command that exists and options that command takes, and docs/python.md lists each options
object's fields as the dataclass declares them."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import typer

from edgekit.cli import app

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def _commands() -> dict[tuple[str, ...], set[str]]:
    """Each command's path and the options it takes (long and short)."""
    found = {}

    def walk(group, path):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, (*path, name))
            else:
                found[(*path, name)] = {o for p in command.params for o in [*getattr(p, "opts", []),
                                                                            *getattr(p, "secondary_opts", [])]}

    walk(typer.main.get_command(app), ())
    return found


def _command_lines(text: str) -> list[str]:
    """The `edgekit ...` command lines in a document's code blocks, continuation lines joined and the
    trailing comment cut."""
    lines = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("edgekit "):
                lines.append(re.split(r"\s#", line, maxsplit=1)[0].strip())
    return lines


def _problems(line: str, commands: dict[tuple[str, ...], set[str]]) -> list[str]:
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    words = words[1:]
    while words and words[0] in ("--verbose", "-v", "--debug"):
        words = words[1:]
    path = next((p for p in sorted(commands, key=len, reverse=True) if tuple(words[:len(p)]) == p), None)
    if path is None:
        return [f"{line}: no such command"]
    options = commands[path] | {"--help"}
    # a placeholder such as [--format auto|...] or "--device PHONE" is still an option name
    flags = {w.strip("[]").split("=")[0] for w in words[len(path):] if w.strip("[]").startswith("-")}
    return [f"{line}: {' '.join(path)} has no {f}" for f in sorted(flags) if f not in options and f != "-"
            and not f.startswith("---")]


def test_every_documented_command_line_uses_options_the_command_has():
    commands = _commands()
    lines = [(doc.name, line) for doc in DOCS for line in _command_lines(doc.read_text())]
    assert len(lines) > 20
    problems = [f"{doc}: {p}" for doc, line in lines for p in _problems(line, commands)]
    assert problems == []


def test_the_docs_check_sees_a_wrong_option():
    commands = _commands()
    assert _problems("edgekit export b0-seg --target tflite --no-such-flag", commands) == [
        "edgekit export b0-seg --target tflite --no-such-flag: export has no --no-such-flag"]
    assert _problems("edgekit frobnicate x", commands) == ["edgekit frobnicate x: no such command"]
    assert _problems("edgekit eval b0-seg -d DIR --device R5CT12345", commands) == []


@pytest.mark.parametrize("name", ["ExportOptions", "EvalOptions", "DebugOptions", "DeviceVerifyOptions", "PhoneOptions",
                                  "PredictOptions", "PackageOptions", "SweepOptions"])
def test_python_md_lists_each_options_field(name):
    import edgekit

    text = (REPO / "docs" / "python.md").read_text()
    listed = re.search(rf"{name}\(([^)]*)\)", text)
    assert listed, f"docs/python.md does not show {name}(...)"
    fields = [f.name for f in dataclasses.fields(getattr(edgekit, name))]
    given = [a.strip() for a in listed.group(1).split(",")]
    assert given == fields[:len(given)] and (given == fields or given[-1] == "..."), (given, fields)


def test_the_readme_is_a_guide_and_the_docs_name_no_issue():
    """At most 300 lines, and no page points at the tracker instead of saying what it means."""
    assert len((REPO / "README.md").read_text().splitlines()) <= 300
    cited = [f"{doc.name}: {line.strip()}" for doc in DOCS for line in doc.read_text().splitlines()
             if re.search(r"\bissues? \d+", line)]
    assert cited == []


def test_the_test_command_shows_why_each_test_was_skipped():
    import tomllib

    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-rs" in options["addopts"].split()


def test_a_long_path_is_printed_whole_at_80_columns(monkeypatch):
    """A path longer than the terminal is not broken inside its name (the terminal wraps the line)."""
    import io

    from rich.console import Console

    import edgekit.report as report

    buffer = io.StringIO()
    # the report's own console, at 80 columns
    monkeypatch.setattr(report, "console", Console(file=buffer, width=80, soft_wrap=report.console.soft_wrap))
    path = "/home/someone/projects/edgekit-artifacts/b0-seg-cityscapes-1024x2048-tflite-fp32/my-street-overlay.png"
    report.predict_report({"variant": "b0-seg-cityscapes", "target": "tflite", "precision": "fp32", "runner": "x",
                           "task": "seg", "random_weights": False, "predictions": [
                               {"image": "my-street.jpg", "classes": [], "files": {"overlay": path}}]})
    assert path in buffer.getvalue()
