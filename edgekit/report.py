"""Rich rendering of the library's result dicts (the same dicts `--json` prints)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()


def _res(res: list[int]) -> str:
    return f"{res[0]}x{res[1]}"


def _verdict(ok: bool | None) -> str:
    return {True: "[green]ok[/]", False: "[red]off[/]", None: "[dim]-[/]"}[ok]


def variants_table(rows: list[dict]) -> None:
    table = Table(title="edgekit model zoo")
    for col in ("variant", "task", "dataset", "classes", "default input", "paper params", "paper MACs"):
        table.add_column(col, justify="right" if col.startswith(("classes", "paper")) else "left")
    for r in rows:
        name = r["name"] + (f" [dim]({', '.join(r['aliases'])})[/]" if r["aliases"] else "")
        table.add_row(
            name,
            r["task"],
            r["dataset"],
            str(r["classes"]),
            _res(r["resolution"]),
            f"{r['paper_params_m']}M" if r["paper_params_m"] else "-",
            f"{r['paper_gmacs']}G" if r["paper_gmacs"] else "-",
        )
    console.print(table)


def _compare_row(table: Table, label: str, cmp: dict, unit: str, fmt: str) -> None:
    paper = f"{cmp['paper']:g}{unit}" if cmp["paper"] is not None else "-"
    ratio = f"{cmp['ratio']:.3f}" if cmp["ratio"] is not None else "-"
    table.add_row(label, f"{cmp['measured']:{fmt}}{unit}", paper, ratio, _verdict(cmp["agrees"]))


def info_table(d: dict) -> None:
    title = f"{d['variant']}  ({d['family'].upper()} EfficientViT, {d['task']}, {d['dataset']})"
    head = Table(show_header=False, title=title)
    head.add_column("", style="bold")
    head.add_column("")
    inp = d["input"]
    head.add_row("input", f"{'x'.join(map(str, inp['shape']))} {inp['layout']} {inp['color']}, /255, "
                 f"mean {tuple(inp['mean'])}, std {tuple(inp['std'])}")
    head.add_row("output", f"{'x'.join(map(str, d['output']['shape']))}: {d['output']['semantics']}")
    w = d["weights"]
    head.add_row("weights", f"{w['path']} (loaded strictly, {w['tensors']} tensors)" if w
                 else "[yellow]random initialisation (pass --weights for the authors' checkpoint)[/]")
    console.print(head)

    cmp = Table(title=f"measured vs paper at {_res(d['resolution'])}")
    for col in ("", "measured", "paper", "ratio", "agrees"):
        cmp.add_column(col, justify="left" if not col else "right")
    _compare_row(cmp, "params", d["params_m"], "M", ".3f")
    _compare_row(cmp, "MACs", d["gmacs"], "G", ".3f")
    console.print(cmp)
    if d["gmacs"]["paper"] is None and d["gmacs"]["paper_resolutions"]:
        others = ", ".join(_res(r) for r in d["gmacs"]["paper_resolutions"])
        console.print(f"[dim]the paper gives MACs at {others}[/]")
    if d["paper_latency"]:
        lat = Table(title="published latency")
        for col in ("device", "input", "runtime", "latency"):
            lat.add_column(col)
        for p in d["paper_latency"]:
            lat.add_row(p["device"], _res(p["resolution"]), p["runtime"], f"{p['ms']:g} ms")
        console.print(lat)
    if d["paper_source"]:
        console.print(f"[dim]paper figures: {d['paper_source']}[/]")
