"""Small helpers shared by CLI commands: JSON output and rich tables."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

# Not a terminal (CI logs, pipes): wide enough that tables are not folded into unreadable columns.
stdout = Console(highlight=False, width=None if os.isatty(1) else 160)


def print_json(data) -> None:
    # Plain print: rich would wrap long lines and break the JSON.
    print(json.dumps(data, indent=2, default=str))


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title, title_justify="left")
    first = min(max([len(columns[0])] + [len(r[0]) for r in rows]), 40) if columns else 0
    for i, c in enumerate(columns):   # the first column (a name people search for) is never folded
        t.add_column(c, overflow="fold", min_width=first if i == 0 else None)
    for r in rows:
        t.add_row(*r)
    return t


def parse_size(text: str | None) -> tuple[int, int] | None:
    from edgekit.errors import EdgekitError

    if text is None:
        return None
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise EdgekitError(f"--input-size {text!r} is not a size", "use HxW, e.g. 224x224, or one number, e.g. 224")
    return parts[0], parts[1]


# SSH options of every command that can measure on a device (bench, compress): one definition, one help text.
HOST = typer.Option(None, "--host", help="measure on a device over SSH: user@host (host key must be known)")
PORT = typer.Option(22, "--port", help="SSH port")
IDENTITY = typer.Option(None, "--identity", "-i", help="SSH private key [default: agent / ~/.ssh]")
KNOWN_HOSTS = typer.Option(None, "--known-hosts", help="known_hosts file [default: ~/.ssh/known_hosts]")
REMOTE_PYTHON = typer.Option("python3", "--remote-python", help="Python on the device (e.g. a venv's python)")
