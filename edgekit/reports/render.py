"""Writes a bundle's human-readable reports (report.md, report.html) from its manifest."""

from __future__ import annotations

import os
from pathlib import Path

from edgekit.manifest import Manifest
from edgekit.reports.html import render_html
from edgekit.reports.markdown import render_markdown


def write_reports(bundle: Path, manifest: Manifest) -> None:
    """Every section of report.md and report.html comes from the manifest, here (bench rewrites them)."""
    for name, text in (("report.md", render_markdown(manifest)), ("report.html", render_html(manifest))):
        tmp = bundle / f".{name}.tmp-{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, bundle / name)
