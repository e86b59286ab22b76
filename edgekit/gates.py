"""CI gates: ``--max-accuracy-drop`` / ``--max-latency-ms`` turn ``edgekit compress`` into a check.

The bundle is always written first (CI keeps it to show why a gate failed); the gate results go into
manifest.json and the reports, then the CLI exits with ``EXIT_GATE_FAILED`` (3), distinct from user
errors (2). The gates pass when at least one artifact meets every gate: that artifact is deployable,
and the manifest lists it.

Latency for the gate: ``edgekit.decisions.latency_for`` (measured here for a local target, measured
on the device after ``edgekit bench --host``, else the labelled estimate); the row names its basis.
Accuracy drop is in percentage points against the INPUT model's PyTorch top-1 (what the compression
cost), or the final model's in bundles written before the input model was measured (the row says so).
The gates only check: they never change what is built (``compile.max_accuracy_drop`` in the recipe does).
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

from edgekit.errors import EXIT_GATE_FAILED, EdgekitError
from edgekit.vocab import Part

if TYPE_CHECKING:  # the CLI imports this module before anything heavy (the manifest pulls in torch)
    from edgekit.manifest import GateReport, Manifest


@dataclass
class Gates:
    max_accuracy_drop: float | None = None   # percentage points vs the input model (PyTorch, test split)
    max_latency_ms: float | None = None      # p50, batch 1

    def __post_init__(self):
        for name, value in (("--max-accuracy-drop", self.max_accuracy_drop), ("--max-latency-ms", self.max_latency_ms)):
            if value is not None and value < 0:
                raise EdgekitError(f"{name} {value} is negative", "give a limit >= 0")

    @property
    def active(self) -> bool:
        return self.max_accuracy_drop is not None or self.max_latency_ms is not None


class GateFailed(EdgekitError):
    exit_code = EXIT_GATE_FAILED


def evaluate_gates(manifest: Manifest, gates: Gates) -> GateReport:
    """Which artifacts meet every gate; the gates pass when at least one does."""
    from edgekit.decisions import drop, latency_for
    from edgekit.manifest import GateReport, GateResult

    inp = manifest.input_reference
    ref = inp if inp is not None else manifest.reference
    which = "input model" if inp is not None else "final model"
    reference = ref.accuracy.top1
    results, deployable = [], []
    for a in manifest.artifacts:
        if a.part == Part.INPUT:
            continue   # the reference itself, not a compression result
        ok = True
        if gates.max_accuracy_drop is not None:
            d = drop(a.top1, reference)
            passed = d is not None and d <= gates.max_accuracy_drop
            results.append(GateResult(gate=f"max_accuracy_drop (pt vs {which} {reference:.2f}%)"
                                      if reference is not None else "max_accuracy_drop (pt)",
                                      limit=gates.max_accuracy_drop, value=d, artifact=a.name, passed=passed,
                                      basis="measured" if d is not None else "not measured"))
            ok &= passed
        if gates.max_latency_ms is not None:
            latency, basis = latency_for(a, manifest.target, manifest.benchmarks)
            passed = latency is not None and latency <= gates.max_latency_ms
            results.append(GateResult(gate=f"max_latency_ms ({basis})", limit=gates.max_latency_ms, value=latency,
                                      artifact=a.name, passed=passed, basis=str(basis)))
            ok &= passed
        if ok:
            deployable.append(a.name)
    return GateReport(passed=bool(deployable), deployable=deployable, results=results,
                      limits={"max_accuracy_drop": gates.max_accuracy_drop, "max_latency_ms": gates.max_latency_ms})


def gate_failure(manifest: Manifest) -> GateFailed | None:
    report = manifest.gates
    if report is None or report.passed:
        return None
    failed = sorted({r.gate.split(" ")[0] for r in report.results if not r.passed})
    hint = f"see the gates table in {manifest.bundle or 'the bundle'}/report.md"
    drift = host_drift_note(manifest) if "max_latency_ms" in failed else None
    return GateFailed(f"CI gate failed: no artifact meets {' and '.join(failed)} (limits {report.limits})"
                      + (f"; {drift}" if drift else ""), hint)


# Below this the host's drift is within the search's own re-timing noise: not worth a word.
DRIFT_WORTH_SAYING = 1.05


def host_drift_note(manifest: Manifest) -> str | None:
    """One clause for a budget missed on a host that ran slower at the final check than during the search (the
    input model's own file timed in both), or None: tells the user whether to blame the host or the model."""
    search = manifest.search
    final = search.final if search else None
    slowdown = final.host_slowdown() if final else None
    if slowdown is None or slowdown < DRIFT_WORTH_SAYING:
        return None
    return (f"this host ran the input model's file {slowdown - 1:.0%} slower than during the search "
            f"({final.input_search_ms:.3f} -> {final.input_final_ms:.3f} ms): the miss may be the host's speed, "
            f"not the model's - rerun on a quiet host, or widen budget.margin (now {1 - search.aim_ms / search.budget_ms:.0%})")
