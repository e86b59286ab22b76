"""Console output: progress bars and messages go to stderr, so ``--json`` stdout stays clean."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(stderr=True, highlight=False)
_quiet = os.environ.get("EDGEKIT_QUIET") == "1"


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def info(message: str) -> None:
    if not _quiet:
        console.print(message)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")


@contextmanager
def progress(description: str, total: int | None) -> Iterator["Bar"]:
    """A progress bar with a ``postfix`` slot for live metrics (loss, accuracy)."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[postfix]}"),
                   console=console, transient=False, disable=_quiet)
    with bar:
        task = bar.add_task(description, total=total, postfix="")
        yield Bar(bar, task, description, total)


class Bar:
    """Live bar on a terminal; in CI logs (no terminal) a plain line every 25% instead, since a
    live bar there only renders once at the end."""

    def __init__(self, bar: Progress, task, description: str, total: int | None):
        self._bar, self._task = bar, task
        self._description, self._total, self._done, self._next_log = description, total, 0, 0.25

    def advance(self, n: int = 1, **metrics: float | str) -> None:
        postfix = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        self._bar.update(self._task, advance=n, **({"postfix": postfix} if metrics else {}))
        self._done += n
        if not console.is_terminal and not _quiet and self._total and self._done / self._total >= self._next_log:
            console.print(f"{self._description}: {self._done}/{self._total} {postfix}")
            self._next_log += 0.25
