"""The latency-budget search in the report: what was asked, how candidates were timed, the trace (every
candidate, the Pareto front marked) and the budget re-checked on the deployed artifact; plus a plot of the
trace (latency against kept MACs, one series per runtime and precision, the budget drawn)."""

from __future__ import annotations

from edgekit.gates import DRIFT_WORTH_SAYING
from edgekit.manifest import Manifest, SearchCandidate, SearchSection
from edgekit.reports.plot import inline_svg

SEARCH_COLUMNS = ["MACs asked", "round to", "MMACs", "params", "backend", "precision", "p50 ms", "basis", "fits",
                  "Pareto", "chosen"]


def search_lines(search: SearchSection) -> list[str]:
    students = any(c.student for c in search.trace)
    lines = [f"Budget **{search.budget_ms:g} ms** p50 (batch 1) on **{search.target}**; candidates (the input model "
             "pruned" + (" and the student architectures" if students else "") + ", untrained: latency does not "
             f"depend on the weights) had to fit {search.aim_ms:.3f} ms "
             f"(the budget less the timing margin). Timing basis: {search.basis}. "
             f"{len(search.trace)} candidates in {search.seconds or 0:.0f} s"
             + (f"; {search.untimed} more levels were pruned but not timed (no more MACs than a candidate "
                "already fitting: they could not be chosen)" if search.untimed else "") + "."]
    if search.chosen:
        why = ("no candidate with trained weights fits: of the random-init students, the one that keeps the most "
               "MACs within the aim" if search.chosen.random_init else
               "the candidate that keeps the most MACs within the aim")
        lines.append(f"- chosen: **{search.chosen.label()}** — {search.chosen.p50_ms:.3f} ms "
                     f"({search.chosen.basis}), {why}")
    lines += [f"- {note}" for note in search.notes]
    final = search.final
    if final:
        verdict = "met" if final.met else "MISSED"
        p50 = f"{final.p50_ms:.3f} ms" if final.p50_ms is not None else "not measured"
        takes = (f", the median of {len(final.takes_ms)} timings ("
                 + ", ".join(f"{t:.3f}" for t in final.takes_ms) + " ms): the first missed" if final.takes_ms else "")
        lines.append(f"- re-checked on the deployed artifact **{final.artifact}** after training: {p50} "
                     f"({final.basis}{takes}): budget **{verdict}**"
                     + ("" if final.macs_match in (None, True) else
                        "; its architecture differs from the chosen candidate's"))
        slowdown = final.host_slowdown()
        if slowdown is not None:
            lines.append(f"- the host's speed: the input model's own file ran {final.input_search_ms:.3f} ms in the "
                         f"search and {final.input_final_ms:.3f} ms at this check ({slowdown - 1:+.0%})"
                         + ("" if final.met or slowdown < DRIFT_WORTH_SAYING else
                            ": the miss may be the host's speed, not the model's"))
    return lines + [""]


def _p50(c: SearchCandidate) -> str:
    if c.p50_ms is None:
        return c.error or "—"
    retimed = f" (slowest of {1 + len(c.retimed_ms)} timings)" if c.retimed_ms else ""
    return f"{c.p50_ms:.3f}{retimed}"


def search_table(search: SearchSection) -> tuple[list[str], list[list[str]]]:
    """The trace, largest first; a "model" column only when students were searched too."""
    students = any(c.student for c in search.trace)
    rows = []
    for c in sorted(search.trace, key=lambda c: (-c.macs, c.round_to or 0, c.backend, c.precision)):
        row = [f"{c.level:.0%}", str(c.round_to or "—"), f"{c.macs / 1e6:.2f}", f"{c.params:,}", c.backend,
               c.precision, _p50(c), str(c.basis),
               "yes" if c.fits else "no", "yes" if c.pareto else "", "**yes**" if c.chosen else ""]
        rows.append(([c.model_label() if c.student else "input"] if students else []) + row)
    return (["model"] if students else []) + SEARCH_COLUMNS, rows


def search_svg(manifest: Manifest) -> str | None:
    """Latency of every timed candidate against its MACs; the budget and the aim as lines; the Pareto front
    dashed; the chosen candidate starred. None without a search."""
    search = manifest.search
    timed = [c for c in (search.trace if search else []) if c.p50_ms is not None]
    if not timed:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    estimated = search.basis.is_estimate
    for i, key in enumerate(dict.fromkeys((c.backend, c.precision) for c in timed)):
        pts = sorted((c for c in timed if (c.backend, c.precision) == key), key=lambda c: c.macs)
        color = f"C{i % 10}"
        ax.scatter([c.macs / 1e6 for c in pts], [c.p50_ms for c in pts], label=f"{key[0]} {key[1]}", s=40,
                   facecolors="none" if estimated else color, edgecolors=color)
    front = sorted((c for c in timed if c.pareto), key=lambda c: c.macs)
    ax.plot([c.macs / 1e6 for c in front], [c.p50_ms for c in front], color="grey", linestyle="--", linewidth=1,
            label="Pareto front")
    ax.axhline(search.budget_ms, color="red", linewidth=1, label=f"budget {search.budget_ms:g} ms")
    ax.axhline(search.aim_ms, color="red", linewidth=0.8, linestyle=":", label="aim (budget - margin)")
    for c in timed:
        if c.student:
            ax.annotate(c.student.split(":")[-1], (c.macs / 1e6, c.p50_ms), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    if search.chosen and search.chosen.p50_ms is not None:
        ax.scatter([search.chosen.macs / 1e6], [search.chosen.p50_ms], marker="*", s=260, facecolors="none",
                   edgecolors="black", label="chosen")
    ax.set_xlabel("MMACs kept")
    ax.set_ylabel(f"p50 batch 1 (ms), {search.basis}")
    ax.set_title(f"latency-budget search on {search.target}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return inline_svg(fig)
