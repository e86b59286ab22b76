"""``edgekit targets``: list the device profiles."""

from __future__ import annotations

import typer

from edgekit.cli import app
from edgekit.cli.common import print_json, stdout, table
import edgekit


@app.command("targets")
def targets_command(json_out: bool = typer.Option(False, "--json", help="print the targets as JSON")) -> None:
    """List the device targets (targets/*.yaml): runtime, precisions and device figures."""
    targets = edgekit.target()
    if json_out:
        print_json([t.model_dump(mode="json") for t in targets])
        return
    rows = [[t.name, t.runtime, ", ".join(t.backends), ", ".join(t.precisions), t.default_precision, t.recipe,
             t.device.cpu or t.device.gpu or "", t.description] for t in targets]
    stdout.print(table("targets", ["name", "runtime", "backends", "precisions", "default", "recipe", "device", "description"],
                       rows))
