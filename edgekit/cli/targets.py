"""``edgekit targets``: list the device profiles."""

from __future__ import annotations

import typer
from rich.markup import escape

from edgekit.cli import app
import edgekit
from edgekit.cli.common import fits, print_json, print_table, table

COLUMNS = ["name", "runtime", "backends", "precisions", "default", "recipe", "device", "description"]


@app.command("targets")
def targets_command(json_out: bool = typer.Option(False, "--json", help="print the targets as JSON")) -> None:
    """List the device targets (targets/*.yaml): runtime, precisions and device figures."""
    targets = edgekit.targets()
    if json_out:
        print_json([t.model_dump(mode="json") for t in targets])
        return
    rows = [[t.name, t.runtime, ", ".join(t.backends), ", ".join(t.precisions), t.default_precision, t.recipe,
             t.device.cpu or t.device.gpu or "", t.description] for t in targets]
    full = table("targets", COLUMNS, rows)
    if fits(full):
        print_table(full)
        return
    # Narrower than the full table: the description stays whole, the other fields follow it on a second line.
    details = [[name, f"{escape(description)}\n[dim]{escape(runtime)} · {precisions} (default {default}) · recipe "
                      f"{escape(recipe)}{' · ' + escape(device) if device else ''} · backends {backends}[/dim]"]
               for name, runtime, backends, precisions, default, recipe, device, description in rows]
    print_table(table("targets", ["name", "description / runtime · precisions · recipe · device"], details))
