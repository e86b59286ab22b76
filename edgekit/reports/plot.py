"""Accuracy-vs-latency Pareto plot across every variant in a bundle, as inline SVG (self-contained).

Points: each artifact measured at compress time on the build host, each ``edgekit bench`` run (one
series per machine), and estimates (hollow markers, legend says ``estimated``) — never one series
mixing measured and estimated numbers. The Pareto front (faster and at least as accurate) is drawn
per measured series.
"""

from __future__ import annotations

import io

from edgekit.manifest import Estimate, Manifest
from edgekit.vocab import Part


def collect_points(manifest: Manifest) -> list[dict]:
    """[{series, name, latency_ms, top1, estimated, role}] for every variant with both numbers; role is
    ``input`` for the input model's FP32 artifact, ``deployed`` for the deploy choice, else None."""
    points = []
    deployed = manifest.deploy.artifact if manifest.deploy else None
    roles = {a.name: "input" for a in manifest.artifacts if a.part == Part.INPUT}
    if deployed:
        roles[deployed] = "deployed"
    accuracy = {}
    for a in manifest.artifacts:
        m = a.metrics
        top1 = a.top1
        accuracy[a.name] = top1
        if top1 is not None and m.latency and m.latency.p50_ms is not None and m.latency.measured != "estimated":
            points.append({"series": "measured: build host (compress)", "name": a.name,
                           "latency_ms": m.latency.p50_ms, "top1": top1, "estimated": False})
        est = m.estimate
        if est and est.latency_ms is not None and top1 is not None:
            points.append({"series": f"estimated: {est.target}", "name": a.name,
                           "latency_ms": est.latency_ms, "top1": top1, "estimated": True})
    for b in manifest.benchmarks:
        where = "this host" if b.where == "local" else b.where
        label = f"{'emulated' if b.emulated else 'measured'}: {where} ({b.device.get('model', '?')})"
        for name, r in b.results.items():
            if r.get("accuracy") and r.get("latency"):
                points.append({"series": label, "name": name, "latency_ms": r["latency"]["p50_ms"],
                               "top1": r["accuracy"]["top1"], "estimated": False})
        for name, raw in (b.estimates or {}).items():
            e, top1 = Estimate(**raw), accuracy.get(name)
            if e.latency_ms is not None and top1 is not None:
                points.append({"series": f"estimated: {e.target}", "name": name,
                               "latency_ms": e.latency_ms, "top1": top1, "estimated": True})
    for p in points:
        p["role"] = roles.get(p["name"])
    return points


def pareto_front(points: list[dict]) -> list[dict]:
    """Points no other point beats on both latency (lower) and accuracy (higher)."""
    front, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p["latency_ms"], -p["top1"])):
        if p["top1"] > best:
            front.append(p)
            best = p["top1"]
    return front


def pareto_svg(manifest: Manifest) -> str | None:
    """The plot as an SVG string, or None when no variant has both accuracy and latency."""
    points = collect_points(manifest)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    series = list(dict.fromkeys(p["series"] for p in points))
    markers = "osD^v<>p*h"
    for i, name in enumerate(series):
        pts = [p for p in points if p["series"] == name]
        estimated = pts[0]["estimated"]
        color = f"C{i % 10}"
        ax.scatter([p["latency_ms"] for p in pts], [p["top1"] for p in pts], label=name, marker=markers[i % len(markers)],
                   s=55, facecolors="none" if estimated else color, edgecolors=color, linewidths=1.5)
        for p in pts:
            label = p["name"] + {"input": " (input model)", "deployed": " (deployed)"}.get(p["role"] or "", "")
            ax.annotate(label, (p["latency_ms"], p["top1"]), fontsize=7, xytext=(4, 3), textcoords="offset points",
                        fontweight="bold" if p["role"] else "normal")
            if p["role"]:
                ax.scatter([p["latency_ms"]], [p["top1"]], s=220, facecolors="none", linewidths=1.2,
                           edgecolors="black" if p["role"] == "deployed" else "grey",
                           marker="*" if p["role"] == "deployed" else "s")
        if not estimated and len(pts) > 1:
            front = pareto_front(pts)
            ax.plot([p["latency_ms"] for p in front], [p["top1"] for p in front], color=color, alpha=0.5,
                    linestyle="--", linewidth=1)
    ax.set_xlabel("latency p50, batch 1 (ms)  [hollow = estimated]")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("accuracy vs latency (dashed: Pareto front)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return inline_svg(fig)


def inline_svg(fig) -> str:
    """A matplotlib figure as SVG text without the XML prolog/doctype, so it can be inlined in HTML; closes it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]
