"""Every decision on a bundle, taken from its manifest: drops, precision selection, CI gates, deploy.

The pipeline calls ``decide`` once the artifacts are measured; ``edgekit bench`` calls it again after
merging a run (a device's measurements change the latency basis, so the choices can change). The
rules themselves are in ``edgekit.decisions``; this module applies them to a typed ``Manifest``.
"""

from __future__ import annotations

from edgekit.decisions import (DEFAULT_AUTO_DROP, artifact_drops, latency_for, recommend, select_precisions,
                               why_not_deployed)
from edgekit.gates import Gates, evaluate_gates
from edgekit.manifest import Drops, Manifest, SearchFinal
from edgekit.reports.reasons import fill_details
from edgekit.vocab import Basis, Part, PrecisionChoice


def decide(manifest: Manifest, gates: Gates | None = None) -> Manifest:
    """Fill drops, ``precision_selection`` (``precision: auto``), ``gates`` and ``deploy`` in place.
    ``gates`` None: the limits the bundle's gates were evaluated with, if any (a bench rerun)."""
    inp = manifest.input_reference
    input_top1 = inp.accuracy.top1 if inp else None
    final_top1 = manifest.reference.accuracy.top1
    for a in manifest.artifacts:
        # the input artifact is scored on a subset of the test split: its Δ is against PyTorch on those images
        own = a.metrics.accuracy.reference_top1 if a.part == Part.INPUT and a.metrics.accuracy else None
        a.metrics.drops = Drops(**artifact_drops(a, own if own is not None else input_top1, final_top1))
    compile_settings = manifest.recipe.compile
    bound = compile_settings.max_accuracy_drop if compile_settings.max_accuracy_drop is not None else DEFAULT_AUTO_DROP
    decisions = select_precisions(manifest.artifacts, manifest.target, final_top1, bound, manifest.benchmarks,
                                  input_top1)
    manifest.precision_selection = decisions if PrecisionChoice.AUTO in compile_settings.precisions else None
    if gates is None and manifest.gates is not None:
        limits = manifest.gates.limits
        gates = Gates(limits.get("max_accuracy_drop"), limits.get("max_latency_ms"))
    if gates is not None and gates.active:
        manifest.gates = evaluate_gates(manifest, gates)
    manifest.deploy = recommend(decisions, manifest.target, manifest.gates.deployable if manifest.gates else None)
    manifest.no_deploy = None if manifest.deploy else why_not_deployed(decisions, manifest.target)
    fill_details(decisions, manifest.deploy, manifest.skipped)   # the English the JSON keeps beside each code
    if manifest.search is not None:
        manifest.search.final = budget_check(manifest)
    return manifest


def budget_check(manifest: Manifest) -> SearchFinal:
    """The latency budget re-checked on the deployed artifact (its latency as every decision reads it:
    a device's measurement once ``edgekit bench --host`` ran), and whether the trained model kept the
    chosen candidate's architecture."""
    search = manifest.search
    chosen = search.chosen
    macs_match = None if chosen is None else manifest.reference.macs == chosen.macs
    deployed = next((a for a in manifest.artifacts if manifest.deploy and a.name == manifest.deploy.artifact), None)
    if deployed is None:
        return SearchFinal(macs_match=macs_match)
    p50, basis = latency_for(deployed, manifest.target, manifest.benchmarks)
    input_search_ms, input_final_ms = _input_timings(manifest, basis)
    return SearchFinal(artifact=deployed.name, p50_ms=p50, basis=basis, met=p50 is not None and p50 <= search.budget_ms,
                       macs_match=macs_match, input_search_ms=input_search_ms, input_final_ms=input_final_ms,
                       takes_ms=_takes(manifest, deployed.name, p50))


def _takes(manifest: Manifest, artifact: str, p50: float | None) -> list[float] | None:
    """Every timing behind ``p50`` where it is the median of several (``pipeline.bench_for_budget``), else None."""
    for entry in manifest.benchmarks:
        latency = entry.results.get(artifact, {}).get("latency") or {}
        if "retimed_p50_ms" in latency and latency.get("p50_ms") == p50:
            return latency["retimed_p50_ms"]
    return None


def _input_timings(manifest: Manifest, basis: Basis) -> tuple[float | None, float | None]:
    """The input model's p50 in the search (its unpruned candidate on the input artifact's runtime and
    precision) and now (the input artifact), both on ``basis``; (None, None) where either is missing or was
    estimated (an estimate does not drift)."""
    artifact = next((a for a in manifest.artifacts if a.part == Part.INPUT), None)
    if artifact is None or not basis.measured:
        return None, None
    now, now_basis = latency_for(artifact, manifest.target, manifest.benchmarks)
    searched = next((c for c in manifest.search.trace
                     if c.student is None and c.level == 1.0 and c.round_to is None and c.basis == basis
                     and (c.backend, c.precision) == (artifact.backend, artifact.precision) and c.p50_ms), None)
    if now is None or now_basis != basis or searched is None:
        return None, None
    return searched.p50_ms, now
