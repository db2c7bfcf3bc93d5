"""The tables edgekit prints: they fit the terminal without cutting the names a user must type."""

import io

from rich.console import Console

from conftest import run_edgekit


def test_tables_fit_80_columns_without_cutting_names():
    done = run_edgekit("variants", env={"COLUMNS": "80"})
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in ("b1-seg-ade20k", "b3-seg-cityscapes", "m5-cls"):
        assert any(name in line for line in lines), name
    assert "…" not in done.stdout


def test_profile_table_fits_the_terminal(monkeypatch):
    import edgekit.report as report

    record = {"variant": "b1-seg-ade20k", "resolution": [512, 512], "target": "tflite", "precision": "int8-dynamic",
              "device": {"serial": "R5CT1234567", "profile": "s8gen1"}, "delegate": "cpu", "threads": 4,
              "init_ms": 25.1, "median_ms": 101.23, "mean_ms": 102.5, "std_ms": 3.1, "p90_ms": 104.2,
              "peak_memory_mb": 88.1, "harness": "benchmark_model",
              "delegate_nodes": {"replaced": 276, "total": 299, "partitions": 24}, "paper": {"ms": 100},
              "vs_paper": 1.01, "random_weights": True, "integrity": "model file as exported",
              "results_file": "r.jsonl", "artifact": "x"}
    for width in (80, 200):
        buffer = io.StringIO()
        monkeypatch.setattr(report, "console", Console(file=buffer, width=width, soft_wrap=True))
        report.profile_table([record])
        text = buffer.getvalue()
        lines = text.splitlines()
        table = lines[:next(i for i, line in enumerate(lines) if line.startswith("└")) + 1]
        assert max(len(line) for line in table) <= width  # the lines after the table are the terminal's to wrap
        assert "…" not in text
        for value in ("b1-seg-ade20k", "101.23", "102.50±3.10", "104.20", "88.1", "276/299 (24 part.)", "R5CT1234567"):
            assert value in text, (width, value)  # nothing lost at any width: what the table cannot hold follows it
        assert ("at this width" in text) == (width == 80)
