"""report.md: the tables a person reads in a CI artifact or a PR comment."""

from __future__ import annotations

from edgekit.reports.tables import ARTIFACT_COLUMNS, STAGE_COLUMNS, artifact_rows, fmt, stage_rows


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
    if manifest.get("skipped"):
        out += ["## Not produced", ""] + [f"- {s['backend']} {s['precision']}: {s['reason']}" for s in manifest["skipped"]]
        out.append("")
    return "\n".join(out)
