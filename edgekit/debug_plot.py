"""The debugger's picture: each matched tensor's SQNR against PyTorch along the depth of the network
(worst photo and median), the target's bar, the first tensor below it and the largest drop marked,
blocks labelled under the axis, flagged tensors ringed."""

from __future__ import annotations

import math
from pathlib import Path

CAP_DB = 150.0  # exact tensors (inf dB) are drawn at the top


def _shown(v: float) -> float:
    return CAP_DB if v == math.inf or v > CAP_DB else (-10.0 if v == -math.inf else v)


def plot(result: dict, path: Path) -> None:
    """Write the PNG atomically (temp file, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    xs = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=130)
    ax.plot(xs, [_shown(r["sqnr_db_median"]) for r in rows], color="tab:blue", linewidth=1, label="median photo")
    ax.plot(xs, [_shown(r["sqnr_db_min"]) for r in rows], color="tab:orange", linewidth=1, label="worst photo")
    alone = [(i, _shown(r["alone_db"])) for i, r in enumerate(rows) if r.get("alone_db") is not None]
    if alone:
        ax.scatter([i for i, _ in alone], [v for _, v in alone], s=8, color="tab:green", zorder=3,
                   label="the layer alone (PyTorch's module on the artifact's own input)")
    ax.axhline(result["bar_db"], color="gray", linestyle="--", linewidth=0.8,
               label=f"the target's bar ({result['bar_db']:g} dB)")
    flagged = [i for i, r in enumerate(rows) if r["flags"]]
    if flagged:
        ax.scatter(flagged, [_shown(rows[i]["sqnr_db_min"]) for i in flagged], s=40, facecolors="none",
                   edgecolors="red", linewidths=1, zorder=4, label="flagged (fp16 range / int8 clip or spread)")
    index = {r["module"]: i for i, r in enumerate(rows)}
    for key, color, text in (("first_below", "crimson", "first below the bar"), ("largest_drop", "purple",
                                                                                   "largest drop")):
        mark = result.get(key)
        if mark is not None and mark["module"] in index:
            i = index[mark["module"]]
            y = _shown(rows[i]["alone_db"] if key == "largest_drop" and rows[i].get("alone_db") is not None
                       else rows[i]["sqnr_db_min"])
            left = i > len(rows) / 2  # the label on the side with room
            ax.annotate(f"{text}:\n{mark['module']}", (i, y), xytext=(-10 if left else 10,
                                                                       -28 if key == "largest_drop" else 22),
                        textcoords="offset points", fontsize=7, color=color, ha="right" if left else "left",
                        arrowprops={"arrowstyle": "->", "color": color, "linewidth": 0.8})
    starts = [i for i, r in enumerate(rows) if i == 0 or r["block"] != rows[i - 1]["block"]]
    labelled = -10
    for n, i in enumerate(starts):
        ax.axvline(i - 0.5, color="lightgray", linewidth=0.6, zorder=0)
        if i - labelled < max(5, len(rows) // 20):  # too close to the last label to be read
            continue
        labelled = i
        ax.text(i, -0.02 - 0.05 * (n % 2), rows[i]["block"], transform=ax.get_xaxis_transform(), fontsize=6,
                rotation=0, ha="left", va="top", color="dimgray")
    ax.set_xticks([])
    ax.set_xlim(-1, max(len(rows), 2))
    ax.set_ylabel(f"SQNR vs PyTorch (dB; exact drawn at {CAP_DB:g})")
    ax.set_title(f"{result['variant']} {result['target']} {result['precision']}: where the artifact parts from "
                 f"PyTorch ({len(rows)} tensors, graph order)", fontsize=10)
    ax.grid(True, axis="y", linestyle=":", linewidth=0.5)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=7, frameon=False)
    if result.get("random_weights"):
        fig.text(0.01, 0.005, "random stand-in weights", fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    from edgekit.pictures import save_figure

    save_figure(fig, path)
