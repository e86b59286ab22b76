"""report.html: the same tables as report.md (same row functions) plus the Pareto plot, in one file
with no external resources (inline CSS and SVG), so it opens from a CI artifact or an email."""

from __future__ import annotations

import html

from edgekit.manifest import Manifest
from edgekit.reports.plot import pareto_svg
from edgekit.reports.tables import (ARTIFACT_COLUMNS, BENCH_COLUMNS, ESTIMATE_COLUMNS, GATE_COLUMNS, SELECTION_COLUMNS,
                                    STAGE_COLUMNS, artifact_rows, bench_rows, bench_title, estimate_rows, fmt,
                                    gate_rows, selection_rows, skipped_label, stage_rows)

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:left}th{background:#f0f0f0}td.fail{color:#b00;font-weight:bold}.note{color:#555;font-size:13px}"""


def _table(table_id: str, columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td{' class=fail' if c == 'FAIL' else ''}>{html.escape(str(c))}</td>" for c in r)
                   + "</tr>" for r in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_html(manifest: Manifest) -> str:
    e = html.escape
    model, data, ref, target = manifest.model, manifest.data, manifest.reference, manifest.target
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>edgekit report: {e(manifest.run_name)}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>edgekit report: {e(manifest.run_name)}</h1><ul>",
             f"<li>model: <code>{e(str(model.source))}</code> ({model.params:,} params)</li>",
             f"<li>data: <code>{e(data.source)}</code> (test {data.test})</li>",
             f"<li>target: <b>{e(target.name)}</b> — {e(target.description)}</li>",
             f"<li>PyTorch reference top-1: {fmt(ref.accuracy.top1)}%</li></ul>"]
    svg = pareto_svg(manifest)
    parts.append("<h2>Accuracy vs latency</h2>")
    parts.append(f'<div id="pareto-plot">{svg}</div>' if svg else "<p class=note>no variant has both accuracy and latency</p>")
    if manifest.gates:
        verdict = "passed" if manifest.gates.passed else "FAILED"
        parts += [f"<h2>CI gates: {verdict}</h2>", _table("gates", GATE_COLUMNS, gate_rows(manifest))]
    parts += ["<h2>Stages</h2>", _table("stages", STAGE_COLUMNS, stage_rows(manifest)),
              "<h2>Artifacts</h2>", "<p class=note>measured through each artifact's own runtime on the build host; "
              "the last column is an estimate for the target device</p>",
              _table("artifacts", ARTIFACT_COLUMNS, artifact_rows(manifest))]
    if manifest.deploy:
        parts.append(f"<h2>Deploy</h2><p><b>{e(manifest.deploy.artifact)}</b> — {e(manifest.deploy.reason)}</p>")
    for i, d in enumerate(manifest.precision_selection or []):
        parts += [f"<h2>Precision selection: {e(d.backend)}{'' if d.part == 'whole' else f' ({e(d.part)})'}</h2>",
                  f"<p>Chosen: <b>{e(str(d.chosen))}</b> — {e(d.reason)}</p>",
                  _table(f"selection-{i}", SELECTION_COLUMNS, selection_rows(d))]
    for i, entry in enumerate(manifest.benchmarks):
        parts += [f"<h3>{e(bench_title(entry))}</h3>",
                  _table(f"bench-{i}", BENCH_COLUMNS, bench_rows(manifest.artifacts, entry))]
    rows = estimate_rows(manifest.artifacts, manifest.benchmarks)
    if rows:
        parts += ["<h2>Estimated latency (not measured)</h2>", _table("estimates", ESTIMATE_COLUMNS, rows)]
    if manifest.skipped:
        parts += ["<h2>Not produced</h2><ul>"] + [f"<li>{e(skipped_label(s))}: {e(s.reason)}</li>"
                                                   for s in manifest.skipped] + ["</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts)
