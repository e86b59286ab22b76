"""Decisions on a bundle's artifacts: which latency they use, precision selection, deploy.

Two references and one latency (ARCHITECTURE.md, "Decisions"):

- accuracy: precision selection bounds each candidate's drop against the final FP32 PyTorch model
  (what compiling and quantizing cost); ``deploy`` and the CI gates report and judge the drop
  against the input model (what the whole compression cost, what a user asks);
- latency: ``latency_for(artifact, target, benchmarks)`` is the one number every decision ranks on,
  with its basis: measured here for a local target (the latest ``edgekit bench`` on this host, else
  the compress-time measurement), measured on the device once ``edgekit bench --host`` has run,
  else the target's labelled estimate. The build host's latency is never a remote target's number, and a
  latency measured under emulation (a bench entry whose device is ``emulated``: an aarch64 Python under
  QEMU) is nobody's: shown in reports, never used here.

A ranking says when its candidates' bases differ, and when two estimates are closer than the
estimator's error it keeps both and asks for a device measurement instead of pretending to know.
Two measured candidates closer than ``MEASURED_TIE`` are a tie the clock cannot break: the more
accurate one is chosen.

Artifacts may be compile-time ``Artifact`` objects (metrics a dict) or the manifest's typed
``ArtifactRecord``; benchmarks ``BenchEntry`` objects or their dicts: ``_plain`` reads either, so
compilation (a split tail's choice, before its heads are scored) and ``edgekit bench`` (after the
device ran) decide with the same code. The rows are typed records with a reason code
(``edgekit.decision_records``); ``edgekit.reports.reasons`` says them in English.
"""

from __future__ import annotations

from typing import Any, Iterable

from edgekit.decision_records import Alternative, Candidate, Decision, Deploy, TieBreak
from edgekit.target import Target
from edgekit.vocab import Basis, Part, Precision, ReasonCode

DEFAULT_AUTO_DROP = 1.0      # percentage points, when the recipe sets no max_accuracy_drop
DEFAULT_ESTIMATE_ERROR = 0.25  # relative; a target file may give ``device.estimate_error`` (measured)
# relative; measured p50s closer than this are a tie, broken by accuracy. Why 5%: the same two INT8 files of one
# model, timed in alternation on a shared 2-core host, read 3% and 8% apart in two runs an hour apart, and a
# deploy choice that follows such a difference trades accuracy (0.5 pt there) for nothing the device will see.
# It is also the like-for-like bar's latency margin (benchmarks/vs_peers.py).
MEASURED_TIE = 0.05


def _plain(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return value.model_dump(mode="json", exclude_none=True)


def latency_for(artifact, target: Target, benchmarks: Iterable = ()) -> tuple[float | None, Basis]:
    """(p50 ms at batch 1, basis) of ``artifact`` on ``target``: the one latency decisions use.

    basis is measured here (local target), measured on the device (a bench over SSH, with where), estimated
    (for a target) or not available. A split tail runs on the server (this host). Bench entries from an
    emulated machine are skipped."""
    metrics = _plain(artifact.metrics)
    entries = [e for e in map(_plain, benchmarks) if not (e.get("device") or {}).get("emulated")]
    local = target.reach == "local" or artifact.part == Part.TAIL
    if not local:
        for entry in reversed(entries):
            result = entry.get("results", {}).get(artifact.name, {})
            p50 = result.get("latency", {}).get("p50_ms")
            if entry.get("where", "local") != "local" and p50 is not None:
                return float(p50), Basis.on_device(entry["where"])
    else:
        for entry in reversed(entries):
            result = entry.get("results", {}).get(artifact.name, {})
            p50 = result.get("latency", {}).get("p50_ms")
            if entry.get("where") == "local" and p50 is not None:
                return float(p50), Basis.here()
        lat = metrics.get("latency") or {}
        if lat.get("p50_ms") is not None and lat.get("measured", "host") != "estimated":
            return float(lat["p50_ms"]), Basis.here()
    est = metrics.get("estimate") or {}
    if est.get("latency_ms") is not None:
        return float(est["latency_ms"]), Basis.estimated(est.get("target") or target.name)
    lat = metrics.get("latency") or {}
    if local and lat.get("p50_ms") is not None:   # a TensorRT artifact's own roofline, labelled
        return float(lat["p50_ms"]), Basis.estimated(target.name)
    return None, Basis.not_available()


def estimate_error(target: Target) -> float:
    return float(getattr(target.device, "estimate_error", None) or DEFAULT_ESTIMATE_ERROR)


def _top1(artifact) -> float | None:
    return (_plain(artifact.metrics).get("accuracy") or {}).get("top1")


def drop(top1: float | None, reference: float | None) -> float | None:
    return None if top1 is None or reference is None else round(reference - top1, 3)


def within_error(a: float, b: float, error: float) -> bool:
    """True when estimates a and b (a <= b) cannot be told apart: the faster one's upper error bound
    reaches the slower one's lower bound."""
    return a * (1 + error) >= b * (1 - error)


def mixed_bases(rows: Iterable[Candidate | Alternative | Deploy]) -> list[Basis]:
    """The latency bases of the timed rows, when more than one (a ranking across them says so)."""
    kinds = sorted({r.latency_source for r in rows if r.p50_ms is not None and r.latency_source}, key=str)
    return kinds if len(kinds) > 1 else []


def _ties(best: Candidate, rows: list[Candidate], error: float) -> list[Candidate]:
    """Estimated candidates the estimate cannot separate from ``best``."""
    if not best.latency_source.is_estimate:
        return []
    return [r for r in rows if r is not best and r.latency_source.is_estimate
            and within_error(best.p50_ms, r.p50_ms, error)]


def _measured(row: Candidate) -> bool:
    return row.p50_ms is not None and row.latency_source.measured


def pick(fastest: Candidate, rows: list[Candidate]) -> tuple[Candidate, TieBreak | None]:
    """The candidate to choose given the fastest: the most accurate of the measured candidates (same
    basis) whose p50 is within ``MEASURED_TIE`` of the fastest's, and the tie it broke when that is not
    the fastest itself. Estimates are left to ``_ties`` (kept, measure on the device)."""
    if not _measured(fastest) or fastest.top1 is None:
        return fastest, None
    close = [r for r in rows if _measured(r) and r.latency_source == fastest.latency_source
             and r.top1 is not None and r.p50_ms <= fastest.p50_ms * (1 + MEASURED_TIE)]
    best = max(close, key=lambda r: (r.top1, -r.p50_ms))
    if best.top1 <= fastest.top1:
        return fastest, None
    return best, TieBreak(artifact=fastest.artifact, p50_ms=fastest.p50_ms, gain_pt=round(best.top1 - fastest.top1, 3))


def _why_not(row: Candidate, best: Candidate, kept: set[str], max_drop: float) -> ReasonCode:
    """Why a candidate other than the chosen one was not chosen."""
    if row.artifact in kept:
        return ReasonCode.ESTIMATE_TIE
    if row.not_scored:
        return ReasonCode.NOT_SCORED
    if row.precision == Precision.MIXED and not row.eligible and row.drop is not None and row.drop <= max_drop \
            and row.p50_ms is not None:
        return ReasonCode.MIXED_NOT_FASTER
    if row.drop is None or row.p50_ms is None:
        return ReasonCode.NOT_MEASURED
    if row.drop > max_drop:
        return ReasonCode.DROP_OVER_BOUND
    if best.p50_ms is not None and row.p50_ms <= best.p50_ms:
        return ReasonCode.TIED_LESS_ACCURATE
    return ReasonCode.SLOWER


def _mixed_must_beat_fp32(rows: list[Candidate]) -> None:
    """A mixed INT8/float file is a candidate only when it is faster than its backend's FP32 file on the same
    latency basis: its float layers cost time, and a file no faster than FP32 is FP32 with INT8's error."""
    fp32 = next((r for r in rows if r.precision == Precision.FP32 and r.p50_ms is not None), None)
    for r in rows:
        if r.precision == Precision.MIXED and r.eligible and (
                fp32 is None or r.latency_source != fp32.latency_source or r.p50_ms >= fp32.p50_ms):
            r.eligible = False


def select_precisions(artifacts: list, target: Target, final_top1: float | None, max_drop: float,
                      benchmarks: Iterable = (), input_top1: float | None = None,
                      server_target: Target | None = None) -> list[Decision]:
    """Per part and backend: the fastest candidate (``latency_for``) whose drop against the final FP32
    model is within ``max_drop`` points (a measured near-tie goes to the more accurate, ``pick``). Marks
    ``meta.chosen``/``meta.selection`` (the reason code) and returns the decisions. The input model's own
    artifact (part ``input``) is a reference, never a candidate."""
    benchmarks = list(benchmarks)
    error = estimate_error(target)
    decisions = []
    groups = dict.fromkeys((a.part, a.backend) for a in artifacts if a.part != Part.INPUT)
    for part, backend in groups:
        group = [a for a in artifacts if (a.part, a.backend) == (part, backend)]
        part_target = server_target if part == Part.TAIL and server_target is not None else target
        rows = []
        for a in group:
            top1 = _top1(a)
            p50, basis = latency_for(a, part_target, benchmarks)
            d = drop(top1, final_top1)
            rows.append(Candidate(artifact=a.name, precision=a.precision, top1=top1, drop=d,
                                  drop_vs_input=drop(top1, input_top1) if part != Part.TAIL else None, p50_ms=p50,
                                  latency_source=basis, eligible=d is not None and p50 is not None and d <= max_drop,
                                  not_scored=_plain(a.metrics).get("not_scored")))
        _mixed_must_beat_fp32(rows)
        eligible = [r for r in rows if r.eligible]
        also: list[Candidate] = []
        tie = None
        if eligible:
            best, tie = pick(min(eligible, key=lambda r: r.p50_ms), eligible)
            also = _ties(best, eligible, error)
            reason = ReasonCode.FASTEST_WITHIN_BOUND
        else:
            measured = [r for r in rows if r.top1 is not None]
            if not measured:
                decisions.append(Decision(part=part, backend=backend, max_accuracy_drop=max_drop,
                                          reason=ReasonCode.NONE_MEASURED, candidates=rows))
                continue
            best = max(measured, key=lambda r: r.top1)
            reason = ReasonCode.NONE_WITHIN_BOUND
        kept = {r.artifact for r in also}
        for r in rows:
            r.chosen = r is best
            r.reason = reason if r is best else _why_not(r, best, kept, max_drop)
        for a in group:
            row = next(r for r in rows if r.artifact == a.name)
            a.meta["chosen"] = row.chosen
            a.meta["selection"] = str(row.reason)
        decisions.append(Decision(part=part, backend=backend, chosen=best.artifact, max_accuracy_drop=max_drop,
                                  reason=reason, tied_with=tie, estimate_error=error if also else None,
                                  also_kept=sorted(kept), candidates=rows))
    return decisions


def recommend(decisions: list[Decision], target: Target | None = None,
              deployable: list[str] | None = None) -> Deploy | None:
    """The artifact to deploy: of each backend's chosen candidate, the fastest on ``latency_for`` (those
    passing the CI gates first, when gates ran; a measured near-tie goes to the more accurate, ``pick``).
    Its drop is reported against the input model. Why one: a user deploying to a device wants one
    answer; the other backends stay in the bundle."""
    chosen = [d.chosen_candidate() for d in decisions if d.chosen and d.part == Part.WHOLE]
    timed = [r for r in chosen if r is not None and r.p50_ms is not None]
    if not timed:
        return None
    gated = deployable is not None

    def tier(r: Candidate) -> tuple[bool, bool]:
        return gated and r.artifact not in deployable, not r.eligible

    fastest = min(timed, key=lambda r: (*tier(r), r.p50_ms))
    best, tie = pick(fastest, [r for r in timed if tier(r) == tier(fastest)])
    error = estimate_error(target) if target is not None else DEFAULT_ESTIMATE_ERROR
    also = _ties(best, [r for r in timed if r.eligible], error)
    passing = gated and best.artifact in deployable
    return Deploy(artifact=best.artifact, top1=best.top1, drop=best.drop_vs_input, drop_vs_final=best.drop,
                  p50_ms=best.p50_ms, latency_source=best.latency_source,
                  reason=ReasonCode.FASTEST_PASSING_GATES if passing else ReasonCode.FASTEST_CHOICE, tied_with=tie,
                  others=[Alternative(artifact=r.artifact, p50_ms=r.p50_ms, latency_source=r.latency_source)
                          for r in timed if r is not best],
                  also_kept=[r.artifact for r in also])


def why_not_deployed(decisions: list[Decision], target: Target) -> list[str]:
    """When ``recommend`` chose nothing: one line per whole-model candidate saying why it could not be deployed
    (deploy needs an accuracy and a latency on the target; without them "no artifact was chosen" names no fix)."""
    lines = []
    for d in decisions:
        if d.part != Part.WHOLE:
            continue
        for c in d.candidates:
            if c.not_scored:
                why = f"not scored ({c.reason or 'see the report'})"
            elif c.top1 is None:
                why = "no accuracy: it could not be scored on the test split"
            elif c.p50_ms is None:
                why = no_latency_reason(target)
            else:
                why = f"not chosen by its backend's precision selection ({c.reason or c.detail})"
            lines.append(f"{c.artifact}: {why}")
    return lines or ["no whole-model artifact was built (see 'not produced')"]


def no_latency_reason(target: Target) -> str:
    """Why ``latency_for`` found no number for an artifact on ``target``, and what gives one."""
    if target.reach == "local":
        return f"no latency: it was not timed on this host and {target.name} gives no estimate for it"
    where = f"target {target.name}" + (f" ({target.source_file})" if target.source_file else "")
    figures = ("its device figures gave no estimate" if target.device.peak_gops
               else "it has no device figures (device.peak_gops) to estimate from")
    return (f"no latency: {where} is reached over SSH, was not benchmarked there "
            f"(edgekit bench BUNDLE --host user@device) and {figures}")


def artifact_drops(artifact, input_top1: float | None, final_top1: float | None) -> dict:
    top1 = _top1(artifact)
    return {"vs_input": drop(top1, input_top1), "vs_final": drop(top1, final_top1)}
