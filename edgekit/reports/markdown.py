"""report.md: the report's sections (``sections.py``) as Markdown, for a CI artifact or a PR comment."""

from __future__ import annotations

from edgekit.manifest import Manifest
from edgekit.reports.sections import PLOT, Plot, Table, build_sections


def _table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(manifest: Manifest, plots: set[str] | None = None) -> str:
    """``plots``: the plot files written next to report.md (default: the accuracy-vs-latency one)."""
    plots = {PLOT} if plots is None else plots
    out = [f"# edgekit report: {manifest.run_name}", ""]
    for section in build_sections(manifest):
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out += [_table(block.columns, block.rows), ""]
            elif isinstance(block, Plot):
                out += [f"![{block.alt}]({block.file})" if block.file in plots else f"({block.missing})", ""]
            else:
                out.append(block)
        if out[-1] != "":
            out.append("")
    return "\n".join(out)
