"""Writes a bundle's human-readable reports (report.md, report.html, pareto.svg) from its manifest."""

from __future__ import annotations

import os
from pathlib import Path

from edgekit.manifest import Manifest
from edgekit.reports.html import render_html
from edgekit.reports.markdown import render_markdown
from edgekit.reports.plot import pareto_svg
from edgekit.reports.search import search_svg
from edgekit.reports.sections import PLOT, SEARCH_PLOT


def write_reports(bundle: Path, manifest: Manifest) -> None:
    """Every section of report.md and report.html comes from the manifest, here (bench rewrites them)."""
    svgs = {name: svg for name, svg in ((PLOT, pareto_svg(manifest)), (SEARCH_PLOT, search_svg(manifest))) if svg}
    files = [("report.md", render_markdown(manifest, set(svgs))), ("report.html", render_html(manifest, svgs)),
             *svgs.items()]
    for name, text in files:
        tmp = bundle / f".{name}.tmp-{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, bundle / name)
