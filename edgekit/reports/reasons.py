"""Decision rows in English: what the reports, the CLI and the manifest's ``detail`` strings say.

The rows (``edgekit.decision_records``) carry a ``ReasonCode`` and the numbers; this module is the one place
that turns them into sentences. A row from a bundle written before reasons had codes has no code: its
English, kept in ``detail``, is said as it is.
"""

from __future__ import annotations

from edgekit.decision_records import Candidate, Decision, Deploy, NotScored, Skipped, TieBreak
from edgekit.decisions import MEASURED_TIE, mixed_bases
from edgekit.vocab import Precision, ReasonCode

MEASURE_ON_DEVICE = "measure on the device"


def _tie(tie: TieBreak | None) -> str:
    if tie is None:
        return ""
    return (f"; tied on latency with {tie.artifact} ({tie.p50_ms:.3f} ms, within {MEASURED_TIE:.0%}: a difference "
            f"the clock cannot tell from load) and {tie.gain_pt:.2f} pt more accurate")


def _bases(rows) -> str:
    kinds = mixed_bases(rows)
    return f"; mixed latency bases ({', '.join(str(k) for k in kinds)})" if kinds else ""


def not_scored_text(value: NotScored | str) -> str:
    if isinstance(value, str):
        return value
    return (f"{value.ratio:.2f}x the p50 of {value.faster}, which is within {value.bound} pt of the final FP32 "
            f"model: no decision can choose it (profile.score: all scores every file)")


def explain_decision(d: Decision) -> str:
    """Why precision selection chose ``d.chosen`` for its part and backend."""
    best = d.chosen_candidate()
    if d.reason is ReasonCode.NONE_MEASURED:
        return "no candidate could be measured"
    if d.reason is ReasonCode.NONE_WITHIN_BOUND and best is not None:
        return (f"no candidate within {d.max_accuracy_drop} pt of the final FP32 model; kept the most accurate "
                f"({best.precision})")
    if d.reason is ReasonCode.FASTEST_WITHIN_BOUND and best is not None:
        eligible = [c for c in d.candidates if c.eligible]
        text = (f"fastest of {len(eligible)} candidate(s) within {d.max_accuracy_drop} pt of the final FP32 model "
                f"(p50 {best.p50_ms:.3f} ms {best.latency_source}, drop {best.drop:+.2f} pt)"
                + _tie(d.tied_with) + _bases(eligible))
        if d.also_kept:
            text += (f"; {', '.join(d.also_kept)} within the estimate's ±{d.estimate_error or 0:.0%} error: "
                     f"kept too, {MEASURE_ON_DEVICE}")
        return text
    return d.detail


def explain_candidate(c: Candidate, d: Decision) -> str:
    """Why a candidate of ``d`` was, or was not, chosen."""
    if c.chosen:
        return explain_decision(d)
    best = d.chosen_candidate()
    if c.reason is ReasonCode.ESTIMATE_TIE:
        return f"kept: estimate within ±{d.estimate_error or 0:.0%} of the chosen one, {MEASURE_ON_DEVICE}"
    if c.reason is ReasonCode.NOT_SCORED and c.not_scored:
        return f"not scored: {not_scored_text(c.not_scored)}"
    if c.reason is ReasonCode.NOT_MEASURED:
        return "not measured"
    if c.reason is ReasonCode.DROP_OVER_BOUND:
        return f"accuracy drop {c.drop:+.2f} pt > {d.max_accuracy_drop} pt"
    if c.reason is ReasonCode.TIED_LESS_ACCURATE and best is not None:
        return (f"within {MEASURED_TIE:.0%} of the chosen one's p50 ({c.p50_ms:.3f} vs {best.p50_ms:.3f} ms, "
                f"{c.latency_source}) and {best.top1 - c.top1:.2f} pt less accurate")
    if c.reason is ReasonCode.MIXED_NOT_FASTER:
        fp32 = next((r for r in d.candidates if r.precision == Precision.FP32 and r.p50_ms is not None), None)
        than = f" ({c.p50_ms:.3f} vs {fp32.p50_ms:.3f} ms)" if fp32 is not None and c.p50_ms is not None else ""
        return f"INT8 with layers kept in float, not faster than the backend's FP32 file{than}: it buys nothing"
    if c.reason is ReasonCode.SLOWER and best is not None:
        return f"slower: p50 {c.p50_ms:.3f} ms vs {best.p50_ms:.3f} ms ({c.latency_source})"
    return c.detail


def explain_deploy(dep: Deploy) -> str:
    """Why ``dep.artifact`` is the one to deploy."""
    if dep.reason not in (ReasonCode.FASTEST_CHOICE, ReasonCode.FASTEST_PASSING_GATES):
        return dep.detail
    others = ", ".join(f"{o.artifact} {o.p50_ms:.3f} ms ({o.latency_source})" for o in dep.others)
    text = (f"fastest per-backend choice (p50 {dep.p50_ms:.3f} ms {dep.latency_source})"
            + (" among those passing the CI gates" if dep.reason is ReasonCode.FASTEST_PASSING_GATES else "")
            + _tie(dep.tied_with) + (f"; others: {others}" if others else "") + _bases([dep, *dep.others]))
    if dep.also_kept:
        text += f"; {', '.join(dep.also_kept)} cannot be told apart by the estimate: {MEASURE_ON_DEVICE}"
    return text


def explain_skipped(s: Skipped) -> str:
    """Why a (backend, precision) was not built."""
    if s.reason is ReasonCode.UNKNOWN_BACKEND:
        return "backend not available in this edgekit version"
    if s.reason is ReasonCode.RUNTIME_NOT_INSTALLED:
        return f"runtime not installed (pip install 'edgekit[{s.extra}]')"
    if s.reason is ReasonCode.TARGET_LACKS_PRECISION:
        return f"target {s.target} does not support {s.precision}"
    if s.reason is ReasonCode.BACKEND_LACKS_PRECISION:
        return f"{s.backend} backend does not build {s.precision}"
    return s.detail


def fill_details(decisions: list[Decision], deploy: Deploy | None, skipped: list[Skipped]) -> None:
    """Each row's ``detail``: its reason in English, so the manifest's JSON reads on its own."""
    for d in decisions:
        d.detail = explain_decision(d)
        for c in d.candidates:
            c.detail = explain_candidate(c, d)
    if deploy is not None:
        deploy.detail = explain_deploy(deploy)
    for s in skipped:
        s.detail = explain_skipped(s)
