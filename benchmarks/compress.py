"""The generic kind: one model x data x recipe x target through edgekit's own compress, as a user runs it. A
benchmark that is only "compress this and check the numbers" is a row of scenarios.yaml of this kind, not a
script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.schema import Measured


def run(work: Path, model: str | None = None, data: str | None = None, recipe: str | None = None,
        target: str = "x86-cpu", threads: int | None = None, seed: int | None = None) -> Measured:
    """``model`` and ``data`` None: edgekit's built-in demo (its digits teacher). ``recipe`` None: the target's
    own recipe. ``seed``: the recipe's seed (what a scenario's ``seeds`` repeat over) [default: the recipe's].
    The bundle is kept in ``work``/bundle for a look afterwards."""
    import edgekit

    if seed is not None:
        from edgekit.recipe import load_recipe
        from edgekit.target import load_target

        recipe = load_recipe(recipe or load_target(target).recipe).model_copy(update={"seed": seed})

    manifest = edgekit.compress(model, data, target=target, recipe=recipe, out=work / "bundle", force=True,
                                threads=threads).manifest
    return summarize(manifest.model_dump(mode="json"))


def summarize(manifest: dict[str, Any]) -> Measured:
    """A bundle's manifest as a result: one row per artifact, and the values bars read."""
    final = manifest["references"]["final"]["accuracy"]["top1"]
    rows = []
    for a in manifest["artifacts"]:
        m = a.get("metrics") or {}
        latency = m.get("latency") or {}
        top1 = (m.get("accuracy") or {}).get("top1")
        rows.append({"artifact": a["name"], "precision": a.get("precision"), "top1": top1,
                     "delta_vs_final": None if top1 is None else round(top1 - final, 3),
                     "agreement": (m.get("agreement") or {}).get("top1_agreement"),
                     "p50_ms": latency.get("p50_ms"), "latency": latency.get("measured"), "bytes": a.get("bytes")})
    deltas = [abs(r["delta_vs_final"]) for r in rows if r["delta_vs_final"] is not None]
    deploy = manifest.get("deploy") or {}
    metrics = {"input_top1": manifest["references"]["input"]["accuracy"]["top1"], "final_top1": final,
               "artifact_delta_pt": max(deltas) if deltas else None,   # the largest, either way
               "deployed": deploy.get("artifact"), "deployed_top1": deploy.get("top1"),
               "deployed_drop_pt": deploy.get("drop"), "deployed_p50_ms": deploy.get("p50_ms"),
               "seconds": manifest.get("seconds")}
    return Measured(rows=rows, metrics=metrics, seeds=[s for s in [(manifest.get("recipe") or {}).get("seed")]
                                                       if s is not None],
                    details={"model": manifest["model"].get("source"), "data": manifest.get("data"),
                             "recipe": (manifest.get("recipe") or {}).get("name"),
                             "target": (manifest.get("target") or {}).get("name")})
