"""The kind ``zoo``: benchmarks/zoo.py's sweep (each architecture pruned to 50% of the MACs, then FP32 and INT8
on x86-cpu and rpi4, every model in its own capped subprocess) as a scenario of the suite. zoo.py keeps the
sweep itself; this module only selects models, keeps the rows between invocations and summarises them.

    python -m benchmarks run zoo                               # the whole zoo (hours)
    python -m benchmarks run zoo --set "only=[mixnet_s, swin_t]" # a few, matched against the source string
    python -m benchmarks run zoo --set failed=true             # rerun the models whose last row did not pass
    python -m benchmarks run zoo-executorch                    # the ExecuTorch column (an interpreter with it)

``steps`` picks the (target/backend) columns a run builds (default: zoo.STEPS); ``issue_only`` keeps to the
issue's 32 models. A pass needs every step of a target at FP32 agreement >= 99%; the ExecuTorch column's bar
(issue 40) reads ``issue_built_*``: FP32 and INT8 built and run, agreement shown but not required.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import zoo
from benchmarks.schema import Measured


def run(work: Path, only: list[str] | None = None, failed: bool = False, timeout_s: float = zoo.TIMEOUT_S,
        memory_gb: float = zoo.MEMORY_LIMIT_GB, steps: list[str] | None = None, issue_only: bool = False) -> Measured:
    """Runs the selected models and returns every row so far (rows of earlier invocations are kept in
    ``work``/rows.json, so a sweep can be continued in parts)."""
    pairs = zoo.parse_steps(steps)
    targets = tuple(dict.fromkeys(t for t, _ in pairs))
    store = work / "rows.json"
    rows = {r["model"]: r for r in json.loads(store.read_text())} if store.is_file() else {}
    zoo.write_images()
    selected = [(s, px) for s, px, in_issue in zoo.MODELS
                if (not only or any(o in s for o in only)) and (in_issue or not issue_only)
                and (not failed or not (s in rows and all(zoo.passes(rows[s], t, pairs) for t in targets)))]
    for source, px in selected:
        print(f"== {source} ({px} px)", flush=True)
        row = zoo.run_isolated(source, px, timeout_s, memory_gb, steps)
        if store.is_file():   # another invocation on the same work folder may have added rows meanwhile
            rows.update({r["model"]: r for r in json.loads(store.read_text())})
        rows[source] = row
        store.write_text(json.dumps(list(rows.values()), indent=1, default=str))
    order = [s for s, _, _ in zoo.MODELS] + [s for s in rows if s not in {m for m, _, _ in zoo.MODELS}]
    return summarize([rows[s] for s in order if s in rows], pairs)


def summarize(rows: list[dict], steps: list[tuple[str, str]] | None = None) -> Measured:
    """One table row per model (cells: top-1 agreement with the pruned PyTorch model, p50); how many of the
    issue's 32 models and of all pass on each target as metrics."""
    steps = steps or zoo.STEPS
    targets = tuple(dict.fromkeys(t for t, _ in steps))
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
                         for t, b in steps for p in zoo.PRECISIONS},
                      "seconds": r.get("seconds")})
    metrics = {"models": len(rows), "issue_models": sum(r["model"] in issue for r in rows)}
    for t in targets:
        key = t.replace("-", "_")
        metrics[f"issue_pass_{key}"] = sum(zoo.passes(r, t, steps) for r in rows if r["model"] in issue)
        metrics[f"all_pass_{key}"] = sum(zoo.passes(r, t, steps) for r in rows)
    for t, b in steps:   # built and run, whatever the agreement (the ExecuTorch column's bar)
        key = f"{t}_{b}".replace("-", "_")
        metrics[f"issue_built_{key}"] = sum(zoo.passes(r, t, [(t, b)], None) for r in rows if r["model"] in issue)
    return Measured(rows=table, metrics=metrics, seeds=[0], details={"rows": rows},
                    notes=["random weights (seed 0), 6-class Fashion-MNIST RGB folder (72 images), batch-1 p50 on "
                           "this host at 1 thread (shared machine: indicative); a pass = prune + FP32/INT8 built and "
                           "run on every backend of the target, FP32 agreement >= 99%"]
                    + (["ExecuTorch cells: `N ops portable` = operators not lowered to XNNPACK, run on ExecuTorch's "
                        "portable kernels (counts per op in details)"] if any(b == "executorch" for _, b in steps)
                       else []))
