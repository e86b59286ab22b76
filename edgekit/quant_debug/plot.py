"""SQNR per layer in graph order, the floor and the first divergence marked: a PNG written next to the JSON."""

from __future__ import annotations

import math
from pathlib import Path

from edgekit.quant_debug.records import LayerReport


def plot_sqnr(report: LayerReport, path: Path, title: str) -> Path:
    """Write the plot to ``path`` (PNG) with matplotlib's non-interactive backend; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report.layers
    x = list(range(len(layers)))
    y = [l.sqnr_db if not math.isnan(l.sqnr_db) else float("nan") for l in layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(layers) + 2), 3.6), dpi=100)
    try:
        ax.plot(x, y, marker="o", markersize=3, linewidth=1, label="SQNR (median channel)")
        ax.plot(x, [l.tensor_sqnr_db for l in layers], linewidth=0.8, alpha=0.6, label="SQNR (whole tensor)")
        ax.axhline(report.floor_db, color="grey", linestyle="--", linewidth=0.8, label=f"floor {report.floor_db:.0f} dB")
        d = report.divergence
        if d is not None:
            ax.axvline(d.index, color="red", linewidth=1)
            ax.annotate(f"first divergence: {layers[d.index].label}", (d.index, d.sqnr_db), color="red",
                        xytext=(5, 10), textcoords="offset points", fontsize=8)
        step = max(1, len(layers) // 40)
        ax.set_xticks(x[::step])
        ax.set_xticklabels([layers[i].label for i in x[::step]], rotation=90, fontsize=6)
        ax.set_ylabel("dB")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
