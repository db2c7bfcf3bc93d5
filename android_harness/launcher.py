"""An executable file that runs a Python module's `main()`: what stands in for a phone's benchmark
program where a program file is needed (pushed to the virtual device in tests)."""

from __future__ import annotations

import sys
from pathlib import Path


def write_launcher(path, module: str, python: str | None = None, search_path: str | None = None) -> None:
    """`path` becomes `#!python` + `from module import main`; `search_path` is put first on sys.path
    (for a module outside the installed packages)."""
    path = Path(path)
    prefix = f"import sys\nsys.path.insert(0, {search_path!r})\n" if search_path else ""
    path.write_text(f"#!{python or sys.executable}\n{prefix}from {module} import main\nraise SystemExit(main())\n")
    path.chmod(0o755)
