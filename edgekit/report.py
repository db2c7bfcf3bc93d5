"""Rich rendering of the library's result dicts (the same dicts `--json` prints). One file on purpose,
though long: one function per command's output, sharing the table fitting (`print_fitted`) and the
number formats, so every command prints alike."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

# soft_wrap: a line longer than the terminal is left to the terminal to wrap, never broken inside a path
# or a number by rich (and a pipe gets it whole); tables still fit the width they are given
console = Console(soft_wrap=True)


def _res(res: list[int]) -> str:
    return f"{res[0]}x{res[1]}"


def _verdict(ok: bool | None) -> str:
    return {True: "[green]ok[/]", False: "[red]off[/]", None: "[dim]-[/]"}[ok]


def _cell_width(text: str) -> int:
    from rich.text import Text

    return max((Text.from_markup(line).cell_len for line in text.split("\n")), default=0)


def print_fitted(title: str, columns: list[tuple[str, str, int]], rows: list[list[str]]) -> None:
    """A table that fits the terminal and loses nothing: `columns` are (header, justify, priority).
    Cells and headers are never wrapped or cut; columns move out of the table, highest priority number
    first, until it fits, and each row's values of those columns follow the table on a line of their
    own (which no width cuts). Priority 0 columns (the names a user types, verdicts) stay in the table."""
    from rich.text import Text

    def width(i: int) -> int:
        return max([_cell_width(columns[i][0]), *(_cell_width(row[i]) for row in rows)]) + 3  # padding and a rule

    shown = list(range(len(columns)))
    while sum(width(i) for i in shown) + 1 > console.width:
        droppable = [i for i in shown if columns[i][2] > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i][2], i)))
    table = Table(title=title)
    for i in shown:
        header, justify, _ = columns[i]
        table.add_column(header, justify=justify, no_wrap=True, min_width=width(i) - 3)
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    console.print(table)
    moved = [i for i in range(len(columns)) if i not in shown]
    if not moved:
        return

    def plain(cell: str) -> str:
        return " ".join(Text.from_markup(cell).plain.split())


    names = [i for i in shown if columns[i][1] == "left" and columns[i][2] <= 1]  # the names that tell rows apart
    console.print(f"[dim]at this width, {', '.join(columns[i][0] for i in moved)} per row:[/]")
    for row in rows:
        console.print(" ".join(plain(row[i]) for i in names if plain(row[i]) != "-") + ": "
                      + "; ".join(f"{columns[i][0]} {plain(row[i])}" for i in moved), markup=False)


def variants_table(rows: list[dict]) -> None:
    columns = [("variant", "left", 0), ("alias", "left", 1), ("task", "left", 2), ("dataset", "left", 3),
               ("classes", "right", 5), ("default input", "left", 4), ("paper params", "right", 6),
               ("paper MACs", "right", 6)]
    print_fitted("edgekit model zoo", columns, [
        [r["name"], ", ".join(r["aliases"]) or "-", r["task"], r["dataset"], str(r["classes"]), _res(r["resolution"]),
         f"{r['paper_params_m']}M" if r["paper_params_m"] else "-", f"{r['paper_gmacs']}G" if r["paper_gmacs"] else "-"]
        for r in rows])


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
    head.add_row("weights", w["shipped"] if w and w.get("shipped") else
                 f"{w['path']} (loaded strictly, {w['tensors']} tensors)" if w
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


def _num(x: float, fmt: str = ".1e") -> str:
    return "inf" if x == float("inf") else f"{x:{fmt}}"


def inspect_tables(d: dict) -> None:
    title = f"{d['variant']} deploy form for {d['target']} at {_res(d['resolution'])}"
    console.print(f"[bold]{title}[/]  images: {', '.join(d['images'])}")
    if d["weights_note"]:
        console.print(f"[yellow]{d['weights_note']}[/]")
    agree = "pixels argmax same" if d["task"] == "seg" else "top-1 same"
    columns = [("rewrite", "left", 0), ("exact", "left", 1), ("max abs", "right", 3), ("max rel", "right", 2),
               ("min SQNR dB", "right", 1), (agree, "right", 2), ("cum. min SQNR dB", "right", 1)]
    rows = []
    for s in d["rewrites"]:
        p, c = s["vs_previous"], s["vs_trained"]
        rows.append([s["name"], "yes" if s["exact"] else "[yellow]no[/]", _num(p["max_abs"]), _num(p["max_rel"]),
                     _num(p["sqnr_db_min"], ".1f"), f"{p['agreement']:.2%}", _num(c["sqnr_db_min"], ".1f")])
    print_fitted("rewrites (each against the step before / against the trained model)", columns, rows)
    if "upsample_options" in d:
        columns = [("upsample", "left", 0), ("max abs", "right", 2), ("min SQNR dB", "right", 1), (agree, "right", 1),
                   ("CPU ms", "right", 2), ("CPU ratio", "right", 1)]
        rows = [[u["upsample"], _num(u["vs_trained"]["max_abs"]), _num(u["vs_trained"]["sqnr_db_min"], ".1f"),
                 f"{u['vs_trained']['agreement']:.2%}", f"{u['cpu_ms']:.1f}", f"{u['cpu_ratio']:.3f}"]
                for u in d["upsample_options"]]
        print_fitted("seg-head upsampling (against the trained bicubic model)", columns, rows)
    f16 = d["fp16"]
    verdict = "[green]finite[/]" if f16["finite"] else "[red]inf/NaN[/]"
    ok = "[green]>=[/]" if f16["sqnr_db_min"] >= f16["sqnr_target_db"] else "[red]<[/]"
    console.print(f"fp16 forward of the deploy form: {verdict}, min SQNR {_num(f16['sqnr_db_min'], '.1f')} dB vs fp32 "
                  f"({ok} target {f16['sqnr_target_db']:.0f} dB), {agree} {f16['agreement']:.2%}")
    cpu = d["cpu_ms"]
    console.print(f"PyTorch CPU, one image: trained {cpu['trained']:.1f} ms, deploy form {cpu['deploy']:.1f} ms "
                  f"(ratio {cpu['ratio']:.2f})")
    o = d["graph"]
    console.print(f"ONNX graph: {o['nodes']} nodes, Transpose {o['transposes']} (attention needs "
                  f"{o['transposes_needed']}), Shape/Gather {o['shape_ops']}, BatchNormalization "
                  f"{o['batchnorm_nodes']}, max rank {o['max_rank']}")
    console.print("  " + ", ".join(f"{k} {v}" for k, v in o["ops"].items()))


def _tolerance_text(tol: dict, seg: bool = True) -> str:
    parts = []
    if "max_rel" in tol:
        parts.append(f"max rel <= {tol['max_rel']:.2g}")
    if "sqnr_min_db" in tol:
        parts.append(f"SQNR >= {tol['sqnr_min_db']:g} dB on every photo")
    if "sqnr_median_db" in tol:
        parts.append(f"median >= {tol['sqnr_median_db']:g} dB")
    if "pixel_agreement" in tol and seg:
        parts.append(f">= {tol['pixel_agreement']:.0%} of pixels keep their class")
    return ", ".join(parts)


def quantization_tables(d: dict, top: int = 15) -> None:
    console.print(f"[bold]{d['variant']} {d['target']} {d['precision']} at {_res(d['resolution'])}[/]: each op int8 "
                  f"alone, on {', '.join(d['images'])} (calibrated on {', '.join(d['calibration'])})")
    console.print(f"[dim]against {d['reference']}; kept float in every recipe: {', '.join(d['float_ops'])}[/]")
    if d["weights_note"]:
        console.print(f"[yellow]{d['weights_note']}[/]")
    columns = [("rank", "right", 1), ("op", "left", 0), ("output shape", "left", 2), ("SQNR dB, worst photo", "right", 0),
               ("median", "right", 3)]
    rows = [[str(i), op["op"], "x".join(map(str, op["shape"])), _num(op["sqnr_db_min"], ".1f"), _num(op["sqnr_db"], ".1f")]
            for i, op in enumerate(d["ops"][:top], 1)]
    print_fitted(f"the {min(top, len(d['ops']))} most costly of {len(d['ops'])} quantised ops", columns, rows)
    for p in d["keep_float"]:
        what = "full int8" if p["keep_float"] == 0 else f"the {p['keep_float']} most costly ops float"
        console.print(f"{what}: SQNR median {_num(p['sqnr_db_median'], '.1f')} dB, min {_num(p['sqnr_db_min'], '.1f')} dB")


def _agreement_columns(v: dict) -> list[tuple[str, object]]:
    """The task's own columns of a verification table: (title, cell of a photo's row)."""
    kind = v["agreement_kind"]
    if kind.startswith("pixels"):
        return [("pixels kept", lambda r: f"{r['agreement']:.2%}")]
    if kind.startswith("8-bit"):
        return [("PSNR-Y dB", lambda r: _num(r.get("psnr_y_db"), ".1f")),
                ("8-bit within 1", lambda r: f"{r['agreement']:.2%}")]
    return [("top-1 same", lambda r: "yes" if r["agreement"] == 1 else "[yellow]no[/]"),
            ("top-5 overlap", lambda r: f"{r['top5_agreement']:.0%}")]


def verification_table(v: dict, precision: str, random_weights: bool, spec=None) -> None:
    """`spec`: the artifact's target (its `check_lines` say what its own checks found)."""
    seg = v["agreement_kind"].startswith("pixels")
    t = Table(title=f"verification ({precision}) on {v['image_set']}: {v['compared']} vs {v['reference']}")
    t.add_column("photo", no_wrap=True)
    columns = _agreement_columns(v)
    for col in ("SQNR dB", "max abs", *(title for title, _ in columns)):
        t.add_column(col, justify="right")
    for row in v["images"]:
        t.add_row(row["name"], _num(row["sqnr_db"], ".1f"), _num(row["max_abs"]), *(cell(row) for _, cell in columns))
    console.print(t)
    verdict = "[green]pass[/]" if v["passed"] else "[red]FAIL[/]"
    psnr = (f"PSNR-Y vs PyTorch median {_num(v['psnr_y_db_median'], '.1f')} dB, min "
            f"{_num(v['psnr_y_db_min'], '.1f')} dB; " if "psnr_y_db_median" in v else "")
    console.print(f"SQNR median {_num(v['sqnr_db_median'], '.1f')} dB, min {_num(v['sqnr_db_min'], '.1f')} dB; "
                  f"{psnr}max rel {_num(v['max_rel'])}; {v['agreement_kind']} {v['agreement']:.2%} "
                  f"(peak-based PSNR {_num(v['psnr_peak_db'], '.1f')} dB)")
    console.print(f"tolerance: {_tolerance_text(v['tolerance'], seg)}: {verdict}")
    if seg and not v.get("agreement_held", True) and "pixel_agreement" in v["tolerance"]:
        bar = v["tolerance"]["pixel_agreement"]
        kept = "meets" if v["agreement_min"] >= bar else "would miss"
        console.print(f"[yellow]pixels kept: not held to the {bar:.0%} bar for random stand-in weights (their classes "
                      f"are nearly tied); the worst photo's {v['agreement_min']:.2%} {kept} it[/]")
    for failure in v["failures"]:
        console.print(f"  [red]{failure}[/]")
    if v.get("layers"):
        console.print(f"  [red]{v['layers']['line']}[/] (every layer: {v['layers']['command']})", soft_wrap=True)
    if v["not_run"]:
        console.print(f"[yellow]the artifact's own outputs were not computed: {v['not_run']}[/] (the table compares "
                      f"{v['compared']})")
    if v.get("checks") and spec is not None and spec.check_lines is not None:
        for line in spec.check_lines(v["checks"]):
            console.print(line, markup=False, style=None if " FAIL" not in line else "red")
    if v["calibration_overlap"]:
        console.print(f"[yellow]verified on photos that were also used for calibration: "
                      f"{', '.join(v['calibration_overlap'])} (these numbers flatter the model)[/]")
    if random_weights:
        console.print(f"[yellow]RANDOM WEIGHTS (no --weights): {v['note'] or 'these numbers measure the conversion'}[/]")


def verify_report(result: dict) -> None:
    from edgekit.targets import get_target

    verification_table(result["verification"], result["precision"], result["random_weights"],
                       get_target(result["target"]))


def harness_report(record: dict) -> None:
    libs = f", libraries: {', '.join(sorted(record['libraries']))}" if record["libraries"] else ""
    console.print(f"harness stored: {record['path']} ({record['kind']}, {record['file']}"
                  f"{', ' + record['arch'] if record['arch'] else ''}{libs}, sha256 {record['sha256'][:12]}...)",
                  markup=False, soft_wrap=True)


def export_report(m) -> None:
    io = m.io
    console.print(f"[bold]{m.artifact_dir}[/]  ({m.file_bytes / 1e6:.2f} MB, exported in {m.export_seconds:.0f} s)")
    if m.replaced:
        console.print(f"[yellow]{m.replaced}[/]")
    inp = io["input"]
    quant = f", int8 scale {inp['quantization']['scale']:.4g} zero {inp['quantization']['zero_point']}" if inp.get(
        "quantization") else ""
    console.print(f"input {inp['name']} {'x'.join(map(str, inp['shape']))} {inp['layout']} {inp['dtype']}{quant}; "
                  f"output {m.output_semantics}")
    console.print("rewrites: " + ", ".join(r["name"] for r in m.rewrites))
    if m.source.get("shipped"):
        console.print(f"weights: {m.source['shipped']}", markup=False, soft_wrap=True)
    if m.spec.describe is not None:
        for line in m.spec.describe(m):
            console.print(line, markup=False)
    if m.calibration:
        names = ", ".join(i["name"] for i in m.calibration["images"])
        console.print(f"calibrated on {m.calibration['samples']} samples from {names}")
    verification_table(m.verification, m.precision, m.random_weights, m.spec)
    if m.evaluation:
        for line in eval_summary(m.evaluation):
            console.print(line, markup=False, soft_wrap=True)
        if m.evaluation.get("failure"):
            console.print(f"[red]FAIL: {m.evaluation['failure']}[/]")


def predict_report(r: dict) -> None:
    console.print(f"[bold]{r['variant']}[/] {r['target']} {r['precision']}, run by {r['runner']}")
    if r.get("failed_verification"):
        console.print(f"[red]this artifact {r['failed_verification']}: its outputs are not the model's[/]")
    for p in r["predictions"]:
        name = Path(p["image"]).name
        if r["task"] == "sr":
            w, h = p["output_size"]
            psnr = (f"; PSNR-Y {p['psnr_y']:.2f} dB against {Path(p['hr']).name} (bicubic {p['bicubic_psnr_y']:.2f} "
                    f"dB)" if "psnr_y" in p else f"; {p['hr_missing']}" if p.get("hr_missing") else "")
            console.print(f"{name}: upscaled to {w}x{h} in {p['tiles']} tile{'s' if p['tiles'] > 1 else ''}{psnr}",
                          markup=False, soft_wrap=True)
        elif r["task"] == "seg":
            classes = ", ".join(f"{c['label']} {c['share']:.0%}" for c in p["classes"][:5])
            console.print(f"{name}: {classes}")
        else:
            table = Table(title=name)
            table.add_column("class")
            table.add_column("probability", justify="right")
            for t in p["top"]:
                table.add_row(t["label"], f"{t['probability']:.1%}")
            console.print(table)
        console.print(f"  [dim]{', '.join(p['files'].values())}[/]")
    if r["random_weights"]:
        console.print("[yellow]RANDOM WEIGHTS: no checkpoint was given, so these classes mean nothing[/]")
    for u in r.get("unreadable", []):
        console.print(f"[yellow]skipped: {u['why']}[/]")


def _pct(x: float | None, sign: bool = False) -> str:
    if x is None or math.isnan(x):  # a class absent from labels and predictions
        return "-"
    return f"{100 * x:+.2f}" if sign else f"{100 * x:.2f}"


def eval_summary(r: dict) -> list[str]:
    """The lines a reader needs: what ran on what, the metric of both sides, the difference."""
    what = f"{r['variant']} {r['target']} {r['precision']}" if r["artifact"] is not None else f"{r['variant']} (PyTorch)"
    lines = [f"{what} on {r['images']} {r['dataset']} images from {r['data']}; labels: {r['labels']}",
             f"preprocessing: {r['preprocessing']}" + (f"; {r['resized']} of {r['images']} photos were "
                                                      f"{'tiled or padded' if r['task'] == 'sr' else 'resized'} to "
                                                      "the fixed input" if r["resized"] else ""),
             f"ran: {r['runner']}"]
    if r.get("device"):
        d = r["device"]
        lines[2] += (f"; phone {d['profile']} {d.get('model') or '?'} (SoC {d.get('soc') or '?'}) behind adb server "
                     f"{d.get('adb_server')}")
    if r.get("resumed_images"):
        lines[2] += f"; resumed: {r['resumed_images']} images scored by the interrupted run before"
    sec = r["secondary"]
    if r["task"] == "sr":
        return lines + _sr_eval_lines(r)
    if r["artifact"] is None:
        lines.append(f"{r['metric']} {_pct(r['pytorch']['value'])}, {sec['metric']} {_pct(sec['pytorch'])}")
    else:
        lo, hi = r["delta_ci95"]
        cached = " (PyTorch's scores from the cache)" if r.get("pytorch_cached") else ""
        lines.append(f"{r['metric']}: artifact {_pct(r['artifact']['value'])}, PyTorch {_pct(r['pytorch']['value'])}, "
                     f"delta {_pct(r['delta'], True)} points (95% CI {_pct(lo, True)} to {_pct(hi, True)}, paired "
                     f"bootstrap over images){cached}")
        lines.append(f"{sec['metric']}: artifact {_pct(sec['artifact'])}, PyTorch {_pct(sec['pytorch'])}")
    return lines


def _sr_eval_lines(r: dict) -> list[str]:
    """PSNR in dB and SSIM as SR papers print them, with bicubic x2 as the baseline."""
    sec = r["secondary"]
    sides = [(k, label) for k, label in (("artifact", "artifact"), ("pytorch", "PyTorch"), ("bicubic", "bicubic"))
             if r.get(k) is not None]
    lines = [f"{r['metric']}: " + ", ".join(f"{label} {r[k]['value']:.3f} dB" for k, label in sides)]
    if r["artifact"] is not None:
        lo, hi = r["delta_ci95"]
        cached = " (PyTorch's scores from the cache)" if r.get("pytorch_cached") else ""
        lines[0] += (f"; delta {r['delta']:+.3f} dB (95% CI {lo:+.3f} to {hi:+.3f}, paired bootstrap over "
                     f"images){cached}")
    gain = (r["artifact"] or r["pytorch"])["value"] - r["bicubic"]["value"]
    lines[0] += f"; {gain:+.2f} dB over bicubic"
    lines.append(f"{sec['metric']}: " + ", ".join(f"{label} {sec[k]:.4f}" for k, label in sides))
    return lines


def eval_report(r: dict) -> None:
    lines = eval_summary(r)
    for line in lines[:3]:
        console.print(line, markup=False, soft_wrap=True)
    side = r["artifact"] or r["pytorch"]
    if side["per_class"]:
        t = Table(title=f"IoU per class (%), {r['dataset']}")
        t.add_column("class")
        if r["artifact"] is not None:
            t.add_column("artifact", justify="right")
        t.add_column("PyTorch", justify="right")
        if r["artifact"] is not None:
            t.add_column("delta", justify="right")
        for name, ref in r["pytorch"]["per_class"].items():
            if r["artifact"] is None:
                t.add_row(name, _pct(ref))
                continue
            art = r["artifact"]["per_class"][name]
            t.add_row(name, _pct(art), _pct(ref), "-" if art is None or ref is None else _pct(art - ref, True))
        console.print(t)
    for line in lines[3:]:
        console.print(f"[bold]{line}[/]" if line.startswith(r["metric"]) else line, soft_wrap=True)
    if r.get("failure"):
        console.print(f"[red]FAIL: {r['failure']}[/]")
    if r["note"]:
        console.print(f"[yellow]RANDOM WEIGHTS: {r['note']}[/]")


def targets_table(rows: list[dict]) -> None:
    columns = [("target", "left", 0), ("file", "left", 3), ("precisions (default first)", "left", 1),
               ("options", "left", 2), ("host runner", "left", 5), ("app", "left", 4), ("profiled by", "left", 4)]
    print_fitted("edgekit targets", columns, [
        [r["target"], r["model_file"], ", ".join(r["precisions"]), ", ".join(r["options"]) or "-", r["host_runner"],
         r["platform"] or "-", r["profiler"] or "-"] for r in rows])


def devices_table(rows: list[dict]) -> None:
    if not rows:
        console.print("no devices (is the phone plugged in with USB debugging on? `adb devices` lists none)")
        return
    table = Table(title="connected devices")
    for col in ("serial", "model", "SoC", "profile", "state"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["serial"], r["model"] or "-", r["soc"] or r["platform"] or "-", r["profile"] or "-", r["state"])
    console.print(table)


def profile_table(all_records: list[dict]) -> None:
    records = [r for r in all_records if "skipped" not in r and "failed" not in r]
    harnesses = ", ".join(sorted({r["harness"] for r in records}))
    columns = [("variant", "left", 0), ("res", "right", 1), ("target", "left", 2), ("precision", "left", 1),
               ("device", "left", 1), ("delegate", "left", 4), ("init ms", "right", 8), ("median ms", "right", 0),
               ("mean±std ms", "right", 7), ("p90 ms", "right", 7), ("peak MB", "right", 6),
               ("nodes delegated", "right", 5), ("paper ms", "right", 4), ("vs paper", "right", 4)]
    f = lambda x, fmt=".1f": "-" if x is None else format(x, fmt)  # noqa: E731
    rows = []
    for r in records:
        d = r["delegate_nodes"]
        cov = "-" if d["total"] is None else f"{d['replaced']}/{d['total']} ({d['partitions']} part.)"
        rows.append([r["variant"], _res(r["resolution"]), r["target"], r["precision"], r["device"]["serial"] or "host",
                     f"{r['delegate']} x{r['threads']}", f(r["init_ms"]), f(r["median_ms"], ".2f"),
                     f"{f(r['mean_ms'], '.2f')}±{f(r['std_ms'], '.2f')}", f(r["p90_ms"], ".2f"),
                     f(r["peak_memory_mb"]), cov, f(r["paper"]["ms"] if r["paper"] else None, "g"),
                     f(r["vs_paper"], ".2f")])
    print_fitted(f"latency ({harnesses})", columns, rows)
    for r in records:
        if r.get("op_profile"):
            ops = Table(title=f"{r['variant']} {r['precision']}: time by node type (benchmark_model --enable_op_profiling)")
            for col in ("node type", "count", "avg ms", "share"):
                ops.add_column(col, justify="left" if col == "node type" else "right")
            for row in sorted(r["op_profile"], key=lambda x: -x["avg_ms"])[:12]:
                ops.add_row(row["node_type"], str(row["count"]), f"{row['avg_ms']:.3f}", f"{row['avg_pct']:.1f}%")
            console.print(ops)
        elif r.get("op_profile_note"):
            console.print(f"{r['variant']} {r['precision']}: {r['op_profile_note']}")
    for r in records:
        if r["integrity"] != "model file as exported":
            console.print(f"[yellow]{Path(r['artifact']).name}: {r['integrity']}; recorded under sha256 "
                          f"{r['sha256'][:12]}...[/]")
    several = len({r["device"]["serial"] for r in records}) > 1
    on = (lambda r: f" on {r['device']['serial']}" if several else "")  # noqa: E731
    for r in records:
        if r.get("noisy"):
            console.print(f"[yellow]{Path(r['artifact']).name}{on(r)}: noisy runs ({r['mean_ms']:.2f} +- {r['std_ms']:.2f} ms, "
                          "std over 10% of the mean): another load, thermal throttling or too few runs; close other "
                          "work, let the phone cool, or give more --runs[/]")
    for path in dict.fromkeys(r["results_file"] for r in records if r["results_file"]):
        console.print(f"results appended to {path}")
    for r in records:
        if r.get("results_error"):
            console.print(f"[red]{Path(r['artifact']).name}: {r['results_error']}[/]")
    if any(r["random_weights"] for r in records):
        console.print("RANDOM WEIGHTS: latency does not depend on the weights; accuracy is not measured here")
    if any(r["device"]["profile"] == "host" for r in records):
        console.print("host: this machine, not a phone; 'paper ms' is the Snapdragon 8 Gen 1 figure, shown for "
                      "scale, with no ratio")
    for r in all_records:
        if "skipped" in r:
            console.print(f"[yellow]not profiled: {r['skipped']}[/]")
    _failed_phones(all_records)


def _failed_phones(records: list[dict]) -> None:
    for r in records:
        if "failed" in r:
            d = r["device"]
            console.print(f"[red]FAILED on {d['serial']} ({d['profile']}, {d.get('model') or '?'}): {r['failed']}[/]",
                          soft_wrap=True)


def device_verify_report(result: dict) -> None:
    """`verify --device`: each phone's verification, then the host's verdict beside it."""
    from edgekit.targets import get_target

    spec = get_target(result["target"])
    for r in result["devices"]:
        d = r["device"]
        console.print(f"[bold]{d['serial']}[/] ({d['profile']}, {d.get('model') or '?'}, SoC {d.get('soc') or '?'}, "
                      f"adb server {d.get('adb_server')}): {r['harness']} {r['delegate']} x{r['threads']}, "
                      f"sha256 {r['harness_sha256'][:12]}...", soft_wrap=True)
        verification_table(r["verification"], result["precision"], result["random_weights"], spec)
        if r["verification"].get("tolerance_note"):
            console.print(r["verification"]["tolerance_note"], markup=False)
    _failed_phones(result["failed"])
    host = result["host"]
    console.print(f"host verification (in the manifest, unchanged): {'PASS' if host['passed'] else 'FAIL'} "
                  f"({host['compared']})", markup=False, soft_wrap=True)


def package_report(records: list[dict]) -> None:
    for r in records:
        console.print(f"[bold]{r['bundle']}[/]  ({r['variant']}, {r['precision']}, {r['platform']})")
        console.print(f"  files: {', '.join(r['files'])}")
        console.print(f"  zip:   {r['zip']}")
        if r["compiled_model"] and not r["compiled_model"].endswith(".mlmodelc"):
            console.print(f"  [dim].mlmodelc {r['compiled_model']}[/]")
        if r["random_weights"]:
            console.print("  [yellow]RANDOM WEIGHTS: exported without --weights; fine for wiring up an app, "
                          "not for its results[/]")
        if not r["verified"]:
            console.print("  [red]this artifact FAILED verification at export (see its edgekit.json)[/]")


def _parity(r: dict) -> str:
    if r["sqnr_db_min"] is None:
        return "-"
    kind = "top-1" if (r["agreement_kind"] or "").startswith("top-1") else "pixels"
    agree = f", {kind} {100 * r['agreement']:.1f}%" if r["agreement"] is not None else ""
    return f"{_num(r['sqnr_db_min'], '.1f')} dB{agree}"


def _latency(row: dict) -> str:
    """The cell's median latency; with several phones, each phone's and their median."""
    if not row["latency_ms"]:
        return "-"
    if row.get("phones"):
        return " / ".join(f"{v:.2f}" for v in row["phones"].values()) + f" (median {row['latency_ms']:.2f})"
    return f"{row['latency_ms']:.2f}"


def sweep_table(result: dict) -> None:
    rows = result["rows"]
    paper_devices = sorted({r["paper_device"] for r in rows if r["paper_device"]})
    paper_col = f"paper ms ({', '.join(paper_devices)})" if paper_devices else "paper ms"
    columns = [("variant", "left", 0), ("input", "left", 1), ("target", "left", 1), ("precision", "left", 1),
               ("status", "left", 0), ("size MB", "right", 4), ("min SQNR, agreement", "right", 3),
               ("GMACs", "right", 5), ("latency ms", "right", 0), (paper_col, "right", 4)]
    table_rows = []
    for r in rows:
        status = {"ok": "[green]ok[/]"}.get(r["status"], f"[red]{r['status'].upper()}[/]" if "failed" in r["status"]
                                            else f"[yellow]{r['status']}[/]")
        table_rows.append([r["variant"], _res(r["resolution"]), r["target"], r["precision"], status,
                           f"{r['size_mb']:.2f}" if r["size_mb"] is not None else "-", _parity(r), f"{r['gmacs']:.3g}",
                           _latency(r), f"{r['paper_ms']:g}" if r["paper_ms"] else "-"])
    metric = next((r["metric"] for r in rows if r.get("metric")), None)
    if metric:  # --eval-data: the task metric, and what the conversion cost of it
        columns.insert(7, (f"{metric} (delta)", "right", 2))
        for row, r in zip(table_rows, rows):
            row.insert(7, "-" if r.get("metric_value") is None else
                       f"{_pct(r['metric_value'])} ({_pct(r['metric_delta'], True)})")
    phones = result.get("phones") or []
    print_fitted(f"edgekit sweep on {result['device']}" + (f" ({' / '.join(phones)})" if len(phones) > 1 else ""),
                 columns, table_rows)
    for r in rows:  # a cell's reason in full, outside the table, so no width cuts it
        if r["error"]:
            console.print(f"{r['cell']}: {r['status']}: {r['error']}", markup=False)
        if r.get("note"):
            console.print(f"{r['cell']}: {r['note']}", markup=False, style="yellow")
    if result.get("verdict"):
        console.print(f"[red]{result['verdict']}[/]")
    reused = sum(1 for r in rows if r["profiled"] == "from results.jsonl")
    if reused:
        console.print(f"{reused} of {len(rows)} cells were already measured ({result['results']}): not redone")
    if any(r["random_weights"] for r in rows):
        console.print("[yellow]random weights: the latencies hold, the SQNR/agreement only show conversion fidelity[/]")
    if result["device"] == "host" and paper_devices:
        console.print("[dim]paper ms: the paper's phone figure, for scale; this host is not that phone[/]")
    console.print(f"plot: {result['plot']}")


def _short_tensor(name: str) -> str:
    """An artifact tensor's name as a table shows it: its first part (TFLite joins fused ops' names with ;)."""
    return name.split(";")[0]


def debug_report(r: dict) -> None:
    """`edgekit debug`: one row per matched tensor in graph order, then the verdict lines."""
    from edgekit.layer_debug import one_line

    console.print(f"[bold]{r['variant']} {r['target']} {r['precision']}[/]: {r['ran']}", soft_wrap=True)
    console.print(f"against {r['reference']}, on {r['image_set']} ({len(r['images'])} photos)")
    rows = [[str(i), row["module"], _short_tensor(row["tensor"]), row["op"], "x".join(map(str, row["shape"][1:])),
             _num(row["sqnr_db_median"], ".1f"), _num(row["sqnr_db_min"], ".1f"), _num(row["max_abs_error"]),
             _num(row["drop_db"], ".1f"), ("[red]" + " ".join(row["flags"]) + "[/]") if row["flags"] else ""]
            for i, row in enumerate(r["rows"], 1)]
    print_fitted(f"layer by layer: SQNR against PyTorch's same tensor (bar {r['bar_db']:g} dB)",
                 [("#", "right", 0), ("PyTorch module", "left", 0), ("artifact tensor", "left", 5),
                  ("op", "left", 3), ("shape", "left", 4), ("median dB", "right", 2), ("worst dB", "right", 0),
                  ("max abs err", "right", 6), ("drop dB", "right", 1), ("flags", "left", 0)], rows)
    for note in r["notes"]:
        console.print(f"[yellow]{note}[/]", soft_wrap=True)
    unmatched = r["unmatched"]
    if unmatched["artifact_tensors"] or unmatched["modules_without_tensor"]:
        console.print(f"not matched: {len(unmatched['artifact_tensors'])} of the artifact's tensors (attention "
                      f"internals, layout ops), {len(unmatched['modules_without_tensor'])} PyTorch module outputs "
                      "(fused or computed another way); --json lists them")
    flags = r["fp16_flags"]
    console.print("flags: fp16-overflow (values beyond 65504), fp16-flush (5%+ below fp16's smallest normal)"
                  + ("" if flags else " [dim](not raised: this precision does not compute in fp16)[/]")
                  + "; int8-clip (0.1%+ outside the calibrated range), int8-spread (the median channel spans fewer "
                    "than 32 int8 steps)")
    if r.get("picture"):
        console.print(f"picture: {r['picture']}", markup=False)
    line = one_line(r)
    color = "green" if r["first_below"] is None else "red"
    console.print(f"[{color}]{line}[/]", soft_wrap=True)
