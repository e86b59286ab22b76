"""``edgekit inspect MODEL``: params, MACs, input spec and a per-layer summary."""

from __future__ import annotations

from typing import Optional

import typer

from edgekit.cli import app
from edgekit.cli.common import parse_size, print_json, print_table, stdout, table


@app.command("inspect")
def inspect_command(
    model: str = typer.Argument(..., help="model source: builtin:<name>, torchvision:<arch>, timm:<name>, or a file"),
    arch: Optional[str] = typer.Option(None, help="architecture for a state-dict file, e.g. torchvision:resnet18"),
    input_size: Optional[str] = typer.Option(None, help="input size HxW (default: the model's own)"),
    num_classes: Optional[int] = typer.Option(None, help="replace the classifier head with this many classes"),
    trust_pickle: bool = typer.Option(False, help="allow loading a pickled nn.Module (runs code from the file)"),
    json_out: bool = typer.Option(False, "--json", help="print as JSON"),
) -> None:
    """Show a model's parameters, MACs (counted by torch.utils.flop_counter), input spec and layers."""
    import edgekit

    info = edgekit.inspect(model, arch=arch, input_size=parse_size(input_size), num_classes=num_classes,
                           trust_pickle=trust_pickle)
    layers = info["layers"]
    if json_out:
        print_json(info)
        return
    spec = edgekit.ModelSpec(**info["spec"])
    stdout.print(f"[bold]{info['source']}[/bold]  params {info['params']:,}  MACs {info['macs'] / 1e6:,.2f} M")
    stdout.print(f"input {spec.input_shape} {spec.channel_order}  mean {spec.mean}  std {spec.std}  "
                 f"classes {spec.num_classes}")
    rows = [[r["name"], r["type"], "x".join(map(str, r["output"])), f"{r['params']:,}", f"{r['macs'] / 1e6:.3f}"]
            for r in layers]
    print_table(table("layers", ["layer", "type", "output", "params", "MMACs"], rows))
