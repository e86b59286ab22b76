"""Writes a bundle's human-readable reports (report.md, report.html, pareto.svg) from its manifest."""

from __future__ import annotations

import os
from pathlib import Path

from edgekit.manifest import Manifest
from edgekit.reports.html import render_html
from edgekit.reports.markdown import render_markdown
from edgekit.reports.plot import pareto_svg
from edgekit.reports.sections import PLOT


def write_reports(bundle: Path, manifest: Manifest) -> None:
    """Every section of report.md and report.html comes from the manifest, here (bench rewrites them)."""
    svg = pareto_svg(manifest)
    files = [("report.md", render_markdown(manifest, has_plot=svg is not None)), ("report.html", render_html(manifest, svg))]
    if svg:
        files.append((PLOT, svg))
    for name, text in files:
        tmp = bundle / f".{name}.tmp-{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, bundle / name)
