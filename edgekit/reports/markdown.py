"""report.md: the tables a person reads in a CI artifact or a PR comment."""

from __future__ import annotations

from edgekit.reports.tables import (ARTIFACT_COLUMNS, BENCH_COLUMNS, ESTIMATE_COLUMNS, GATE_COLUMNS, STAGE_COLUMNS,
                                    artifact_rows, bench_rows, bench_title, estimate_rows, fmt, gate_rows, stage_rows)


def _table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(manifest: dict) -> str:
    model, data, ref = manifest["model"], manifest["data"], manifest["reference"]
    target = manifest["target"]
    host = manifest["host"]
    out = [f"# edgekit report: {manifest['run_name']}", "",
           f"- model: `{model['source']}` ({model['params']:,} params, {model['macs'] / 1e6:.2f} MMACs in)",
           f"- data: `{data['source']}` (train {data['train']}, val {data['val']}, test {data['test']})",
           f"- target: **{target['name']}** — {target['description']} (runtime {target['runtime']})",
           f"- recipe: `{manifest['recipe']['name']}`",
           f"- PyTorch reference (final model): top-1 {fmt(ref['accuracy']['top1'])}% on {ref['accuracy']['samples']} "
           "test images",
           f"- measured on: {host['cpu']}, {host['cores']} cores, {host['os']}", "",
           "## Stages", "", _table(STAGE_COLUMNS, stage_rows(manifest)), "",
           "## Artifacts", "",
           "Accuracy and latency are measured through each artifact's own runtime (batch "
           f"{manifest['recipe']['profile']['batch']}).", "",
           _table(ARTIFACT_COLUMNS, artifact_rows(manifest)), ""]
    out += extra_sections(manifest)
    if manifest.get("skipped"):
        out += ["## Not produced", ""] + [f"- {s['backend']} {s['precision']}: {s['reason']}" for s in manifest["skipped"]]
        out.append("")
    return "\n".join(out)


def extra_sections(manifest: dict) -> list[str]:
    """Gates, bench runs (host or devices) and estimates; each only when the bundle has them."""
    out: list[str] = []
    if manifest.get("gates"):
        verdict = "passed" if manifest["gates"]["passed"] else "FAILED"
        out += [f"## CI gates: {verdict}", "", _table(GATE_COLUMNS, gate_rows(manifest)), ""]
    for entry in manifest.get("benchmarks", []):
        out += [f"## {bench_title(entry)}", "", _table(BENCH_COLUMNS, bench_rows(manifest, entry)), ""]
    rows = estimate_rows(manifest)
    if rows:
        out += ["## Estimated latency (not measured)", "",
                "Roofline estimates from per-layer MACs and bytes, the device's peak ops/s and memory bandwidth "
                "from its target file, and a runtime efficiency factor calibrated on host measurements. "
                "They are estimates, not measurements.", "", _table(ESTIMATE_COLUMNS, rows), ""]
    return out
