"""Small helpers shared by CLI commands: JSON output and rich tables that fit the reader's width."""

from __future__ import annotations

import json
import re

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table

from edgekit.ui import output_width

# A terminal's own width; piped: COLUMNS, else 100 (edgekit.ui.output_width).
stdout = Console(highlight=False, width=output_width(1))

# A cell that is a number, with at most a short unit or mark ("96.80", "+1.49", "1,234", "0.015 m",
# "120.5 KB", "×3.4", "1x28x28", "—", "92.00 (250)": a count in brackets): such a column is never wrapped, so no
# number is split mid-digit.
_NUMBER = re.compile(r"^(—|[-+×]?\d[\d,]*(\.\d+)?( ?[A-Za-z%]{1,2})?( \(\d+\))?|\d+(x\d+)+)$")


def is_number(cell: str) -> bool:
    return bool(_NUMBER.match(cell.strip()))


def print_json(data) -> None:
    # Plain print: rich would wrap long lines and break the JSON.
    print(json.dumps(data, indent=2, default=str))


def table(title: str, columns: list[str], rows: list[list[str]], styles: list[str | None] | None = None) -> Table:
    """A table whose number columns never wrap and whose text columns wrap at spaces, each keeping its
    longest word whole (up to 40 characters in the first column, where names are; 24 elsewhere): a word
    longer than that ends in an ellipsis. ``styles``: one rich style per row (None: plain)."""
    t = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        cells = [r[i] for r in rows]
        numeric = bool(cells) and all(is_number(cell) for cell in cells)
        if numeric:   # rich measures any text by its longest word; a number column needs its longest cell
            least = max(cell_len(cell) for cell in [c, *cells])
        else:
            least = min(max(cell_len(word) for cell in [c, *cells] for word in cell.split() or [""]), 24 if i else 40)
        t.add_column(c, no_wrap=numeric, overflow="ellipsis", min_width=least,
                     justify="right" if numeric and i else "left")
    for i, r in enumerate(rows):
        t.add_row(*r, style=styles[i] if styles else None)
    return t


def _measure(renderable, console: Console) -> Measurement:
    """Width range of ``renderable`` unclamped by the console (``Measurement.get`` caps both ends at the
    width it is given)."""
    return Measurement.get(console, console.options.update_width(1 << 14), renderable)


def fits(renderable, console: Console = stdout) -> bool:
    """Whether ``renderable`` shows at its natural width (nothing wrapped) on ``console``."""
    return _measure(renderable, console).maximum <= console.width


def print_table(renderable, console: Console = stdout) -> None:
    """Print a table at the console's width, or, where even its minimum (every number and word whole) is
    wider, at that minimum: a line longer than the window beats a number cut in two."""
    minimum = _measure(renderable, console).minimum
    if minimum <= console.width:
        console.print(renderable)
        return
    lines = console.render(renderable, console.options.update_width(minimum))
    console.print(Segments(lines), crop=False)


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


def print_fitted(title: str, columns: list[str], rows: list[list[str]], optional: list[str],
                 console: Console = stdout) -> None:
    """A table at the console's width: the ``optional`` columns are left out, in that order, until it fits
    (a note names them); the rest is ``print_table``'s."""
    keep = list(columns)
    shown = table(title, keep, rows)
    for name in optional:
        if _measure(shown, console).minimum <= console.width:
            break
        keep.remove(name)
        shown = table(title, keep, [[r[columns.index(c)] for c in keep] for r in rows])
    print_table(shown, console)
    left = [c for c in columns if c not in keep]
    if left:
        console.print(f"left out at this width: {', '.join(left)} (--json has every column)", style="dim",
                      markup=False, highlight=False)
