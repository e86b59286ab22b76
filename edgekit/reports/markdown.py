"""report.md: the tables a person reads in a CI artifact or a PR comment."""

from __future__ import annotations

from edgekit.reports.tables import (ARTIFACT_COLUMNS, BENCH_COLUMNS, ESTIMATE_COLUMNS, GATE_COLUMNS, SELECTION_COLUMNS,
                                    STAGE_COLUMNS, artifact_rows, bench_rows, bench_title, estimate_rows, fmt,
                                    gate_rows, selection_rows, skipped_label, stage_rows)


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
    if manifest.get("split"):
        from edgekit.split.report import split_markdown

        out += split_markdown(manifest)
    out += selection_sections(manifest)
    out += extra_sections(manifest)
    if manifest.get("skipped"):
        out += ["## Not produced", ""] + [f"- {skipped_label(s)}: {s['reason']}" for s in manifest["skipped"]]
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


def selection_sections(manifest: dict) -> list[str]:
    """Calibration set, deploy recommendation and ``precision: auto`` decisions (edgekit/compilation.py)."""
    out: list[str] = []
    cal = manifest.get("calibration")
    if cal:
        out += ["## Calibration", "",
                f"{cal['size']} images from the {cal['split']} split (seed {cal['seed']}, "
                f"{'class-balanced' if cal.get('balanced') else 'random'}), `calibration.npz` sha256 "
                f"`{cal['sha256'][:16]}…`", ""]
        for part, what in (cal.get("parts") or {}).items():
            out.insert(-1, f"- {part}: {what}")
    deploy = manifest.get("deploy")
    if deploy:
        out += ["## Deploy", "", f"**{deploy['artifact']}** — top-1 {deploy['top1']:.2f}% "
                f"(drop {deploy['drop']:+.2f} pt), {deploy['reason']}", ""]
    for d in manifest.get("precision_selection") or []:
        part = d.get("part", "whole")
        out += [f"## Precision selection: {d['backend']}" + ("" if part == "whole" else f" ({part})"), "",
                f"Chosen: **{d['chosen']}** — {d['reason']}", "", _table(SELECTION_COLUMNS, selection_rows(d)), ""]
    return out
