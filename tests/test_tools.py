"""The tests that need a system program are skipped, with the Debian package named, on a machine
without it, and fail under CI, which must never pass by skipping them."""

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.parametrize("ci,outcome", [("", "1 skipped"), ("true", "1 failed")])
def test_a_missing_tool_is_a_named_skip_here_and_a_failure_under_ci(tmp_path, ci, outcome):
    (tmp_path / "test_needs.py").write_text(textwrap.dedent("""
        from conftest import require_tools

        def test_needs_it():
            require_tools("edgekit-no-such-tool", package="edgekit-tool-pkg")
    """))
    env = {"PATH": "/usr/bin:/bin", "CI": ci, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert outcome in done.stdout, done.stdout
    assert "edgekit-no-such-tool not installed (Debian package: edgekit-tool-pkg" in done.stdout
