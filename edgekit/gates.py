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

from edgekit.errors import EXIT_GATE_FAILED, EdgekitError


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


def gate_latency(artifact: dict, target: dict) -> tuple[float | None, str]:
    m = artifact.get("metrics", {})
    if target.get("reach", "local") == "local" and m.get("latency", {}).get("p50_ms") is not None:
        return m["latency"]["p50_ms"], "measured"
    if m.get("estimate", {}).get("latency_ms") is not None:
        return m["estimate"]["latency_ms"], "estimated"
    if m.get("latency", {}).get("p50_ms") is not None:
        return m["latency"]["p50_ms"], "measured on build host"
    return None, "not available"


def evaluate_gates(manifest: dict, gates: Gates) -> dict:
    """{"passed", "deployable": [artifact names], "results": [{gate, limit, value, artifact, passed, basis}]}"""
    reference = manifest["reference"]["accuracy"]["top1"]
    results, deployable = [], []
    for a in manifest.get("artifacts", []):
        ok = True
        if gates.max_accuracy_drop is not None:
            top1 = a.get("metrics", {}).get("accuracy", {}).get("top1")
            drop = None if top1 is None else round(reference - top1, 4)
            passed = drop is not None and drop <= gates.max_accuracy_drop
            results.append({"gate": "max_accuracy_drop (pt)", "limit": gates.max_accuracy_drop, "value": drop,
                            "artifact": a["name"], "passed": passed,
                            "basis": "measured" if drop is not None else "not measured"})
            ok &= passed
        if gates.max_latency_ms is not None:
            latency, basis = gate_latency(a, manifest["target"])
            passed = latency is not None and latency <= gates.max_latency_ms
            results.append({"gate": f"max_latency_ms ({basis})", "limit": gates.max_latency_ms, "value": latency,
                            "artifact": a["name"], "passed": passed, "basis": basis})
            ok &= passed
        if ok:
            deployable.append(a["name"])
    return {"passed": bool(deployable), "deployable": deployable, "results": results,
            "limits": {"max_accuracy_drop": gates.max_accuracy_drop, "max_latency_ms": gates.max_latency_ms}}


def gate_failure(manifest: dict) -> GateFailed | None:
    gates = manifest.get("gates")
    if not gates or gates["passed"]:
        return None
    failed = sorted({r["gate"].split(" ")[0] for r in gates["results"] if not r["passed"]})
    return GateFailed(f"CI gate failed: no artifact meets {' and '.join(failed)} (limits {gates['limits']})",
                      f"see the gates table in {manifest.get('bundle', 'the bundle')}/report.md")
