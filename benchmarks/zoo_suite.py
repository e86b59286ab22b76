"""The kind ``zoo``: benchmarks/zoo.py's sweep (each architecture pruned to 50% of the MACs, then FP32 and INT8
on x86-cpu and rpi4, every model in its own capped subprocess) as a scenario of the suite. zoo.py keeps the
sweep itself; this module only selects models, keeps the rows between invocations and summarises them.

    python -m benchmarks run zoo                               # the whole zoo (hours)
    python -m benchmarks run zoo --set "only=[mixnet_s, swin_t]" # a few, matched against the source string
    python -m benchmarks run zoo --set failed=true             # rerun the models whose last row did not pass
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import zoo
from benchmarks.schema import Measured

TARGETS = ("x86-cpu", "rpi4")


def run(work: Path, only: list[str] | None = None, failed: bool = False, timeout_s: float = zoo.TIMEOUT_S,
        memory_gb: float = zoo.MEMORY_LIMIT_GB) -> Measured:
    """Runs the selected models and returns every row so far (rows of earlier invocations are kept in
    ``work``/rows.json, so a sweep can be continued in parts)."""
    store = work / "rows.json"
    rows = {r["model"]: r for r in json.loads(store.read_text())} if store.is_file() else {}
    zoo.write_images()
    selected = [(s, px) for s, px, _ in zoo.MODELS
                if (not only or any(o in s for o in only))
                and (not failed or not (s in rows and all(zoo.passes(rows[s], t) for t in TARGETS)))]
    for source, px in selected:
        print(f"== {source} ({px} px)", flush=True)
        rows[source] = zoo.run_isolated(source, px, timeout_s, memory_gb)
        store.write_text(json.dumps(list(rows.values()), indent=1, default=str))
    order = [s for s, _, _ in zoo.MODELS] + [s for s in rows if s not in {m for m, _, _ in zoo.MODELS}]
    return summarize([rows[s] for s in order if s in rows])


def summarize(rows: list[dict]) -> Measured:
    """One table row per model (cells: top-1 agreement with the pruned PyTorch model, p50); how many of the
    issue's 32 models and of all pass on each target as metrics."""
    issue = {s for s, _ in zoo.ISSUE}
    table = []
    for r in rows:
        prune = zoo._cell(r["stages"].get("prune"))
        if prune == "ok" and r.get("prune"):
            prune = f"ok {r['prune']['macs_fraction']:.0%}" + (f", {r['prune']['auto_ignored']} kept whole"
                                                              if r["prune"]["auto_ignored"] else "")
        table.append({"model": r["model"].split("?")[0], "px": r["input"], "issue": r["model"] in issue,
                      "prune": prune,
                      "mmacs": (f"{r['macs_before'] / 1e6:.0f} → {r['macs_after'] / 1e6:.0f}" if "macs_after" in r
                                else None),
                      **{f"{t} {b} {p}": zoo._cell(r["stages"].get(f"{t}/{b}/{p}"))
                         for t, b in zoo.STEPS for p in zoo.PRECISIONS},
                      "seconds": r.get("seconds")})
    metrics = {"models": len(rows), "issue_models": sum(r["model"] in issue for r in rows)}
    for t in TARGETS:
        key = t.replace("-", "_")
        metrics[f"issue_pass_{key}"] = sum(zoo.passes(r, t) for r in rows if r["model"] in issue)
        metrics[f"all_pass_{key}"] = sum(zoo.passes(r, t) for r in rows)
    return Measured(rows=table, metrics=metrics, seeds=[0], details={"rows": rows},
                    notes=["random weights (seed 0), 6-class Fashion-MNIST RGB folder (72 images), batch-1 p50 on "
                           "this host at 1 thread (shared machine: indicative); a pass = prune + FP32/INT8 built and "
                           "run on every backend of the target, FP32 agreement >= 99%"])
