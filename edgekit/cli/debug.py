"""``edgekit debug BUNDLE [ARTIFACT]``: where an INT8 artifact departs from FP32, layer by layer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgekit.cli import app
from edgekit.cli.common import print_json, print_table, stdout, table


@app.command("debug")
def debug_command(
    bundle: Path = typer.Argument(..., help="a bundle written by edgekit compress"),
    artifact: Optional[str] = typer.Argument(None, help="the INT8 artifact (default: the deployed one when INT8, "
                                                        "else the first)"),
    images: int = typer.Option(32, "--images", help="calibration images to run the layers on"),
    threads: Optional[int] = typer.Option(None, help="runtime threads (default 1)"),
    json_out: bool = typer.Option(False, "--json", help="print every layer as JSON"),
) -> None:
    """Compare an INT8 artifact with its FP32 sibling layer by layer through its own runtime: SQNR and cosine
    per layer (named by the model's module paths) and the first layer where INT8 breaks. Writes
    debug/<artifact>.json and .png into the bundle."""
    import edgekit
    from edgekit.reports.int8_debug import DEBUG_COLUMNS, explain_divergence, layer_rows

    report = edgekit.debug(bundle, artifact, images=images, threads=threads)
    if json_out:
        print_json(report.to_dict())
        return
    layers = report.layers
    d = layers.divergence
    print_table(table(f"{report.artifact} vs {report.reference} ({layers.runtime}, {layers.images} images)",
                      DEBUG_COLUMNS, layer_rows(layers.layers, d.index if d else None)))
    stdout.print(explain_divergence(d.layer or layers.layers[d.index].label, d.sqnr_db, d.before_db, d.rule,
                                    layers.floor_db, layers.step_db) if d
                 else explain_divergence("", 0.0, None, None, layers.floor_db))
    stdout.print(f"written: {bundle / report.json_path}" + (f", {bundle / report.plot}" if report.plot else ""))
