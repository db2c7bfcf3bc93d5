"""The sweep's picture: latency (log) against MACs, as the papers choose a variant (Figures 1 and 6).

Our points are the medians measured in the sweep; the paper's points are drawn only for the device
they were published for (a host measurement next to a phone figure would invite a false reading).
"""

from __future__ import annotations

from pathlib import Path

PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "int8-dynamic": "v", "int8-weights": "D"}
PAPER_MARKER = "*"


def paper_points(variants: list[str], device: str | None, macs_cache: dict) -> list[dict]:
    """The published latencies of `variants` on `device`, each at our measured MACs for its resolution."""
    from edgekit.complexity import measure
    from edgekit.registry import get_variant

    points = []
    for name in variants:
        variant = get_variant(name)
        for lat in variant.paper.latency:
            if lat.device != device:
                continue
            key = (variant.name, tuple(lat.resolution))
            if key not in macs_cache:
                macs_cache[key] = measure(variant, tuple(lat.resolution)).macs / 1e9
            points.append({"variant": variant.name, "resolution": list(lat.resolution), "gmacs": macs_cache[key],
                           "ms": lat.ms, "device": lat.device, "runtime": lat.runtime})
    return points


def _device_title(device: str | None) -> str:
    from edgekit.android_harness.profiles import PROFILES

    if device == "host":
        return "this host (edgekit's host harness, XNNPACK)"
    profile = PROFILES.get(device or "")
    return profile.description if profile else (device or "unknown device")


def _log_axes(ax, xs: list[float], ys: list[float]) -> None:
    """Log-log with plain-number ticks, and at least a factor 2 of room around the points, so a
    narrow sweep still reads as a log picture and its labels stay inside."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    if xs and ys:
        ax.set_xlim(min(xs) / 2, max(xs) * 2.5)
        ax.set_ylim(min(ys) / 2, max(ys) * 2)
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def plot(rows: list[dict], points: list[dict], device: str | None, path: Path) -> None:
    """Write the PNG atomically (temp file, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    measured = [r for r in rows if r["latency_ms"]]
    variants = sorted({r["variant"] for r in measured} | {p["variant"] for p in points})
    colors = {v: plt.get_cmap("tab10")(i % 10) for i, v in enumerate(variants)}
    fig, ax = plt.subplots(figsize=(9, 6), dpi=150)
    labelled = set()
    for r in measured:
        ax.scatter(r["gmacs"], r["latency_ms"], s=60, color=colors[r["variant"]],
                   marker=PRECISION_MARKERS.get(r["precision"], "o"), edgecolors="black", linewidths=0.5, zorder=3)
        key = (r["variant"], tuple(r["resolution"]))
        if key not in labelled:  # precisions of one model share their MACs: one input label per column
            labelled.add(key)
            ax.annotate(f"{r['resolution'][0]}x{r['resolution'][1]}", (r["gmacs"], r["latency_ms"]),
                        textcoords="offset points", xytext=(7, -3), fontsize=7, color="dimgray")
    failed = [r for r in measured if r["status"] == "verification failed"]
    for r in failed:  # a red ring and a label: a latency whose artifact does not compute the model
        ax.scatter(r["gmacs"], r["latency_ms"], s=220, facecolors="none", edgecolors="red", linewidths=1.5, zorder=5)
        ax.annotate("FAILED", (r["gmacs"], r["latency_ms"]), textcoords="offset points", xytext=(7, 5), fontsize=7,
                    color="red", fontweight="bold")
    for p in points:
        ax.scatter(p["gmacs"], p["ms"], s=180, color=colors[p["variant"]], marker=PAPER_MARKER,
                   edgecolors="black", linewidths=0.7, zorder=4)
        ax.annotate(f"paper {p['resolution'][0]}x{p['resolution'][1]}", (p["gmacs"], p["ms"]),
                    textcoords="offset points", xytext=(8, 4), fontsize=7, color="dimgray")
    _log_axes(ax, [r["gmacs"] for r in measured] + [p["gmacs"] for p in points],
              [r["latency_ms"] for r in measured] + [p["ms"] for p in points])
    ax.set_xlabel("MACs (G, measured on edgekit's model at the input resolution)")
    ax.set_ylabel("latency (ms, median, log scale)")
    ax.set_title(f"Latency vs MACs on {_device_title(device)}", fontsize=11)
    ax.grid(True, which="both", linestyle=":", linewidth=0.5)
    variant_handles = [Line2D([], [], marker="o", linestyle="", color=colors[v], markeredgecolor="black", label=v)
                       for v in variants]
    order = list(PRECISION_MARKERS)
    precisions = sorted({r["precision"] for r in measured}, key=lambda p: order.index(p) if p in order else len(order))
    marker_handles = [Line2D([], [], marker=PRECISION_MARKERS.get(p, "o"), linestyle="", color="lightgray",
                             markeredgecolor="black", label=f"edgekit {p}") for p in precisions]
    if failed:
        marker_handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markersize=11,
                                     markeredgecolor="red", label="FAILED verification"))
    if points:
        marker_handles.append(Line2D([], [], marker=PAPER_MARKER, linestyle="", color="lightgray", markersize=12,
                                     markeredgecolor="black", label="paper (same device, TFLite fp32)"))
    first = ax.legend(handles=variant_handles, title="variant", loc="upper left", fontsize=8, title_fontsize=8)
    ax.add_artist(first)
    ax.legend(handles=marker_handles, title="measured by", loc="lower right", fontsize=8, title_fontsize=8)
    notes = []
    if not points:
        notes.append("no published latency for this device: paper points not drawn")
    if any(r["random_weights"] for r in measured):
        notes.append("random weights (latency does not depend on them; accuracy does)")
    if not measured:
        notes.append("no measurements yet")
    if notes:
        fig.text(0.01, 0.01, "; ".join(notes), fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    from edgekit.pictures import save_figure

    save_figure(fig, path)
