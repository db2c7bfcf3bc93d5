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


def _num(x: float, fmt: str = ".1e") -> str:
    return "inf" if x == float("inf") else f"{x:{fmt}}"


def inspect_tables(d: dict) -> None:
    title = f"{d['variant']} deploy form for {d['target']} at {_res(d['resolution'])}"
    console.print(f"[bold]{title}[/]  images: {', '.join(d['images'])}")
    if d["weights_note"]:
        console.print(f"[yellow]{d['weights_note']}[/]")
    agree = "pixels argmax same" if d["task"] == "seg" else "top-1 same"
    rw = Table(title="rewrites (each against the step before / against the trained model)")
    rw.add_column("rewrite", no_wrap=True)
    for col in ("exact", "max abs", "max rel", "PSNR dB", agree, "cum. PSNR dB"):
        rw.add_column(col, justify="left" if col == "exact" else "right")
    for s in d["rewrites"]:
        p, c = s["vs_previous"], s["vs_trained"]
        rw.add_row(s["name"], "yes" if s["exact"] else "[yellow]no[/]", _num(p["max_abs"]), _num(p["max_rel"]),
                   _num(p["psnr_db"], ".1f"), f"{p['argmax_agreement']:.2%}", _num(c["psnr_db"], ".1f"))
    console.print(rw)
    if "upsample_options" in d:
        up = Table(title="seg-head upsampling (against the trained bicubic model)")
        for col in ("upsample", "max abs", "PSNR dB", agree, "CPU ms", "CPU ratio"):
            up.add_column(col, justify="left" if col == "upsample" else "right")
        for u in d["upsample_options"]:
            v = u["vs_trained"]
            up.add_row(u["upsample"], _num(v["max_abs"]), _num(v["psnr_db"], ".1f"), f"{v['argmax_agreement']:.2%}",
                       f"{u['cpu_ms']:.1f}", f"{u['cpu_ratio']:.3f}")
        console.print(up)
    f16 = d["fp16"]
    verdict = "[green]finite[/]" if f16["finite"] else "[red]inf/NaN[/]"
    ok = "[green]>=[/]" if f16["psnr_db"] >= f16["psnr_target_db"] else "[red]<[/]"
    console.print(f"fp16 forward of the deploy form: {verdict}, PSNR {_num(f16['psnr_db'], '.1f')} dB vs fp32 "
                  f"({ok} target {f16['psnr_target_db']:.0f} dB), {agree} {f16['argmax_agreement']:.2%}")
    cpu = d["cpu_ms"]
    console.print(f"PyTorch CPU, one image: trained {cpu['trained']:.1f} ms, deploy form {cpu['deploy']:.1f} ms "
                  f"(ratio {cpu['ratio']:.2f})")
    o = d["onnx"]
    console.print(f"ONNX graph: {o['nodes']} nodes, Transpose {o['transposes']} (attention needs "
                  f"{o['transposes_needed']}), Shape/Gather {o['shape_ops']}, BatchNormalization "
                  f"{o['batchnorm_nodes']}, max rank {o['max_rank']}")
    console.print("  " + ", ".join(f"{k} {v}" for k, v in o["ops"].items()))


def verification_table(v: dict, precision: str, random_weights: bool) -> None:
    t = Table(title=f"verification against PyTorch ({precision}) on {', '.join(v['images'])}")
    for col in ("max abs", "max rel", "PSNR dB", v["agreement_kind"], "tolerance", "result"):
        t.add_column(col, justify="right")
    shown = {k: val for k, val in v["tolerance"].items() if k in ("max_rel", "psnr_db")}
    tol = ", ".join(f"{k.replace('_db', '')} {'>=' if k == 'psnr_db' else '<='} {val:.2g}" for k, val in shown.items())
    verdict = "[green]pass[/]" if v["passed"] else "[red]FAIL[/]"
    t.add_row(_num(v["max_abs"]), _num(v["max_rel"]), _num(v["psnr_db"], ".1f"), f"{v['argmax_agreement']:.2%}", tol,
              verdict)
    console.print(t)
    if "numerics" in v:
        numerics = v["numerics"] if isinstance(v["numerics"], str) else (
            f"PSNR {v['numerics']['psnr_db']:.1f} dB, agreement {v['numerics']['argmax_agreement']:.2%} (CoreML predict)")
        w, st = v["weights"], v["structure"]
        casts = ", ".join(st["unexpected_casts"]) or "none"
        console.print(f"[yellow]CoreML package numerics: {numerics}[/] (the table compares the torch model that was "
                      f"converted)\npackage: loads, I/O as declared: {st['io_matches']}; casts inside the graph: {casts}; "
                      f"weights vs folded torch weights: {w['compared']} compared, {w['not_found']} not found, "
                      f"max error {w['max_error']:.3g} {w['error_unit']}: {'pass' if w['passed'] else 'FAIL'}")
    if random_weights:
        console.print("[yellow]RANDOM WEIGHTS (no --weights): these numbers measure the conversion, not accuracy[/]")


def export_report(m: dict) -> None:
    io = m["io"]
    console.print(f"[bold]{m['artifact_dir']}[/]  ({m['file_bytes'] / 1e6:.2f} MB, exported in {m['export_seconds']:.0f} s)")
    inp = io["input"]
    quant = f", int8 scale {inp['quantization']['scale']:.4g} zero {inp['quantization']['zero_point']}" if inp.get(
        "quantization") else ""
    console.print(f"input {inp['name']} {'x'.join(map(str, inp['shape']))} {inp['layout']} {inp['dtype']}{quant}; "
                  f"output {m['output_semantics']}")
    console.print("rewrites: " + ", ".join(r["name"] for r in m["rewrites"]))
    verification_table(m["verification"], m["precision"], m["source"]["weights"] is None)


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


def profile_table(records: list[dict]) -> None:
    table = Table(title="latency (benchmark_model)")
    cols = ("variant", "res", "precision", "device", "delegate", "init ms", "median ms", "mean±std ms", "p90 ms",
            "peak MB", "nodes delegated", "paper ms", "vs paper")
    for col in cols:
        table.add_column(col, justify="left" if col in ("variant", "precision", "device", "delegate") else "right",
                         no_wrap=True)
    f = lambda x, fmt=".1f": "-" if x is None else format(x, fmt)  # noqa: E731
    for r in records:
        d = r["delegate_nodes"]
        cov = "-" if d["total"] is None else f"{d['replaced']}/{d['total']} ({d['partitions']} part.)"
        table.add_row(r["variant"], _res(r["resolution"]), r["precision"], r["device"]["serial"] or "host",
                      f"{r['delegate']} x{r['threads']}", f(r["init_ms"]), f(r["median_ms"], ".2f"),
                      f"{f(r['mean_ms'], '.2f')}±{f(r['std_ms'], '.2f')}", f(r["p90_ms"], ".2f"),
                      f(r["peak_memory_mb"]), cov, f(r["paper"]["ms"] if r["paper"] else None, "g"),
                      f(r["vs_paper"], ".2f"))
    Console(width=max(console.width, 170)).print(table)
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
    if any(r["random_weights"] for r in records):
        console.print("RANDOM WEIGHTS: latency does not depend on the weights; accuracy is not measured here")
    if any(r["device"]["profile"] == "host" for r in records):
        console.print("host: this machine, not a phone; 'paper ms' is the Snapdragon 8 Gen 1 figure, shown for "
                      "scale, with no ratio")


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
    if r["psnr_db"] is None:
        return "-"
    kind = "top-1" if (r["agreement_kind"] or "").startswith("top-1") else "argmax"
    agree = f", {kind} {100 * r['agreement']:.1f}%" if r["agreement"] is not None else ""
    return f"{r['psnr_db']:.1f} dB{agree}"


def sweep_table(result: dict) -> None:
    rows = result["rows"]
    paper_devices = sorted({r["paper_device"] for r in rows if r["paper_device"]})
    paper_col = f"paper ms ({', '.join(paper_devices)})" if paper_devices else "paper ms"
    table = Table(title=f"edgekit sweep on {result['device']}")
    for col in ("variant", "input", "target", "precision", "status", "size MB", "PSNR, agreement", "GMACs",
                "latency ms", paper_col):
        table.add_column(col, justify="right" if col[0].isupper() or "ms" in col or col == "size MB" else "left")
    for r in rows:
        status = {"ok": "[green]ok[/]"}.get(r["status"], f"[red]{r['status']}[/]" if "failed" in r["status"]
                                            else f"[yellow]{r['status']}[/]")
        if r["error"]:
            status += f"\n[dim]{r['error']}[/]"
        table.add_row(r["variant"], _res(r["resolution"]), r["target"], r["precision"], status,
                      f"{r['size_mb']:.2f}" if r["size_mb"] is not None else "-", _parity(r), f"{r['gmacs']:.3g}",
                      f"{r['latency_ms']:.2f}" if r["latency_ms"] else "-",
                      f"{r['paper_ms']:g}" if r["paper_ms"] else "-")
    Console(width=max(console.width, 170)).print(table)
    reused = sum(1 for r in rows if r["profiled"] == "from results.jsonl")
    if reused:
        console.print(f"{reused} of {len(rows)} cells were already measured ({result['results']}): not redone")
    if any(r["random_weights"] for r in rows):
        console.print("[yellow]random weights: the latencies hold, the PSNR/agreement only show conversion fidelity[/]")
    if result["device"] == "host" and paper_devices:
        console.print("[dim]paper ms: the paper's phone figure, for scale; this host is not that phone[/]")
    console.print(f"plot: {result['plot']}")
