"""The Python API: the names `import edgekit` gives, loaded lazily, and docs/python.md's example run as written."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_edgekit_is_light_and_names_load_on_use():
    code = ("import sys, edgekit; assert 'torch' not in sys.modules; "
            "print(edgekit.export_artifact.__module__, edgekit.ExportOptions.__name__, sorted(dir(edgekit))[:3])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("edgekit.export ExportOptions")


def test_the_documented_example_runs(tmp_path, capsys):
    import eval_data

    text = (REPO / "docs" / "python.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", text, re.S)
    eval_data.cityscapes(tmp_path / "cityscapes", names=eval_data.SCENES[:2], model_size=(128, 256))
    exec(compile(example, "docs/python.md", "exec"), {"OUT": tmp_path, "CITYSCAPES": tmp_path / "cityscapes",
                                                      "PHOTO": REPO / "calibration" / "images" / "mit-fig-5.jpeg"})
    out = capsys.readouterr().out
    assert "passed True" in out and "(16, 32)" in out and ".zip" in out
    assert re.search(r"mIoU 0\.\d{4} vs PyTorch 0\.\d{4}, delta [+-]0\.\d{4} \(95% CI", out), out
    assert "refused: " in out and "b9-seg" in out
    assert (tmp_path / "bundles").is_dir()
