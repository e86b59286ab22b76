"""report.html: the report's sections (``sections.py``, the same as report.md) plus the Pareto plot, in
one file with no external resources (inline CSS and SVG), so it opens from a CI artifact or an email."""

from __future__ import annotations

import html
import re

from edgekit.manifest import Manifest
from edgekit.reports.sections import Plot, Table, build_sections

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:left}th{background:#f0f0f0}td.fail{color:#b00;font-weight:bold}.note{color:#555;font-size:13px}
#headline{background:#f4f8ff;border:1px solid #cde;padding:.5em 1em}"""


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the sections use: **bold** and `code`."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td{' class=fail' if c == 'FAIL' else ''}>{_inline(str(c))}</td>" for c in r)
                   + "</tr>" for r in table.rows)
    return f'<table id="{table.id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _blocks(blocks: list, svgs: dict[str, str]) -> list[str]:
    out, items = [], []

    def flush():
        if items:
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for block in blocks:
        if isinstance(block, str) and block.lstrip().startswith("- "):
            items.append(_inline(block.lstrip()[2:]))
            continue
        flush()
        if isinstance(block, Table):
            out.append(_table(block))
        elif isinstance(block, Plot):
            svg = svgs.get(block.file)
            plot_id = block.file.rsplit(".", 1)[0] + "-plot"
            out.append(f'<div id="{plot_id}">{svg}</div>' if svg else f"<p class=note>{html.escape(block.missing)}</p>")
        elif block.strip():
            out.append(f"<p>{_inline(block)}</p>")
    flush()
    return out


def render_html(manifest: Manifest, svgs: dict[str, str] | None = None) -> str:
    """``svgs``: plot file name -> SVG text (``Plot.file``), inlined."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>edgekit report: {e(manifest.run_name)}"
             f"</title><style>{CSS}</style></head><body>", f"<h1>edgekit report: {e(manifest.run_name)}</h1>"]
    for section in build_sections(manifest):
        parts.append(f'<section id="{section.id}"><h2>{e(section.title)}</h2>')
        parts += _blocks(section.blocks, svgs or {})
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
