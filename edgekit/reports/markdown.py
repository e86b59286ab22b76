"""report.md: the tables a person reads in a CI artifact or a PR comment."""

from __future__ import annotations

from edgekit.manifest import Manifest
from edgekit.reports.robustness import robustness_markdown
from edgekit.reports.split import split_markdown
from edgekit.reports.tables import (ARTIFACT_COLUMNS, BENCH_COLUMNS, ESTIMATE_COLUMNS, GATE_COLUMNS, SELECTION_COLUMNS,
                                    STAGE_COLUMNS, artifact_rows, bench_rows, bench_title, estimate_rows, fmt,
                                    gate_rows, selection_rows, skipped_label, stage_rows)


def _table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(manifest: Manifest) -> str:
    model, data, ref, target, host = manifest.model, manifest.data, manifest.reference, manifest.target, manifest.host
    out = [f"# edgekit report: {manifest.run_name}", "",
           f"- model: `{model.source}` ({model.params:,} params, {model.macs / 1e6:.2f} MMACs in)",
           f"- data: `{data.source}` (train {data.train}, val {data.val}, test {data.test})",
           f"- target: **{target.name}** — {target.description} (runtime {target.runtime})",
           f"- recipe: `{manifest.recipe.name}`",
           f"- PyTorch reference (final model): top-1 {fmt(ref.accuracy.top1)}% on {ref.accuracy.samples} "
           "test images",
           f"- measured on: {host.get('cpu')}, {host.get('cores')} cores, {host.get('os')}", "",
           "## Stages", "", _table(STAGE_COLUMNS, stage_rows(manifest)), "",
           "## Artifacts", "",
           "Accuracy and latency are measured through each artifact's own runtime (batch "
           f"{manifest.recipe.profile.batch}).", "",
           _table(ARTIFACT_COLUMNS, artifact_rows(manifest)), ""]
    out += split_markdown(manifest)
    out += selection_sections(manifest)
    if manifest.robustness:
        out += [robustness_markdown(manifest.robustness)]
    out += extra_sections(manifest)
    if manifest.skipped:
        out += ["## Not produced", ""] + [f"- {skipped_label(s)}: {s.reason}" for s in manifest.skipped]
        out.append("")
    return "\n".join(out)


def selection_sections(manifest: Manifest) -> list[str]:
    """Calibration set, deploy recommendation and ``precision: auto`` decisions (edgekit/compilation.py)."""
    out: list[str] = []
    cal = manifest.calibration
    if cal:
        out += ["## Calibration", "",
                f"{cal.size} images from the {cal.split} split (seed {cal.seed}, "
                f"{'class-balanced' if cal.balanced else 'random'}), `{cal.path}` sha256 `{cal.sha256[:16]}…`", ""]
        if cal.parts:
            out += [f"- {part}: {what}" for part, what in cal.parts.items()] + [""]
    deploy = manifest.deploy
    if deploy:
        out += ["## Deploy", "", f"**{deploy.artifact}** — top-1 {fmt(deploy.top1)}% "
                f"(drop {deploy.drop:+.2f} pt), {deploy.reason}" if deploy.drop is not None else
                f"**{deploy.artifact}** — {deploy.reason}", ""]
    for d in manifest.precision_selection or []:
        out += [f"## Precision selection: {d.backend}" + ("" if d.part == "whole" else f" ({d.part})"), "",
                f"Chosen: **{d.chosen}** — {d.reason}", "", _table(SELECTION_COLUMNS, selection_rows(d)), ""]
    return out


def extra_sections(manifest: Manifest) -> list[str]:
    """Gates, bench runs (host or devices) and estimates; each only when the bundle has them."""
    out: list[str] = []
    if manifest.gates:
        verdict = "passed" if manifest.gates.passed else "FAILED"
        out += [f"## CI gates: {verdict}", "", _table(GATE_COLUMNS, gate_rows(manifest)), ""]
    for entry in manifest.benchmarks:
        out += [f"## {bench_title(entry)}", "", _table(BENCH_COLUMNS, bench_rows(manifest.artifacts, entry)), ""]
    rows = estimate_rows(manifest.artifacts, manifest.benchmarks)
    if rows:
        out += ["## Estimated latency (not measured)", "",
                "Roofline estimates from per-layer MACs and bytes, the device's peak ops/s and memory bandwidth "
                "from its target file, and a runtime efficiency factor calibrated on host measurements. "
                "They are estimates, not measurements.", "", _table(ESTIMATE_COLUMNS, rows), ""]
    return out
