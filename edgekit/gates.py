"""CI gates: ``--max-accuracy-drop`` / ``--max-latency-ms`` turn ``edgekit compress`` into a check.

The bundle is always written first (CI keeps it to show why a gate failed); the gate results go into
manifest.json and the reports, then the CLI exits with ``EXIT_GATE_FAILED`` (3), distinct from user
errors (2). The gates pass when at least one artifact meets every gate: that artifact is deployable,
and the manifest lists it.

Latency for the gate: the artifact's p50 measured at compress time when the target is this host
(``reach: local``); otherwise (a device reached over SSH) the roofline estimate for the target, and
the row says ``estimated``. Accuracy drop is in percentage points against the PyTorch reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

from edgekit.errors import EXIT_GATE_FAILED, EdgekitError

if TYPE_CHECKING:  # the CLI imports this module before anything heavy (the manifest pulls in torch)
    from edgekit.manifest import GateReport, Manifest


@dataclass
class Gates:
    max_accuracy_drop: float | None = None   # percentage points vs the PyTorch reference
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
    from edgekit.manifest import GateReport, GateResult

    reference = manifest.reference.accuracy.top1
    results, deployable = [], []
    for a in manifest.artifacts:
        ok = True
        if gates.max_accuracy_drop is not None:
            top1 = a.top1
            drop = None if top1 is None or reference is None else round(reference - top1, 4)
            passed = drop is not None and drop <= gates.max_accuracy_drop
            results.append(GateResult(gate="max_accuracy_drop (pt)", limit=gates.max_accuracy_drop, value=drop,
                                      artifact=a.name, passed=passed,
                                      basis="measured" if drop is not None else "not measured"))
            ok &= passed
        if gates.max_latency_ms is not None:
            latency, basis = a.latency_for(manifest.target)
            passed = latency is not None and latency <= gates.max_latency_ms
            results.append(GateResult(gate=f"max_latency_ms ({basis})", limit=gates.max_latency_ms, value=latency,
                                      artifact=a.name, passed=passed, basis=basis))
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
    return GateFailed(f"CI gate failed: no artifact meets {' and '.join(failed)} (limits {report.limits})",
                      f"see the gates table in {manifest.bundle or 'the bundle'}/report.md")
