"""Console output: progress bars and messages go to stderr, so ``--json`` stdout stays clean."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

# Where output is not a terminal (a pipe, a CI log) and COLUMNS is not set: wide enough for the tables'
# compact forms, narrow enough to read in a log viewer.
PIPED_WIDTH = 100


def output_width(fd: int) -> int | None:
    """The width to render at on file descriptor ``fd``: None on a terminal (rich asks the terminal),
    else ``COLUMNS`` when it is set, else ``PIPED_WIDTH``. Why: piped output that ignored ``COLUMNS``
    could not be made to fit the reader's window, and a fixed 160 wrapped every line of an 80-column log."""
    if os.isatty(fd):
        return None
    columns = os.environ.get("COLUMNS", "").strip()
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


console = Console(stderr=True, highlight=False, width=output_width(2))
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


THIRD_PARTY_LOG = "third_party.log"   # under a bundle's logs/


class ThirdPartyLog:
    """What other libraries wrote to stderr during a run (absl/oneDNN/TensorFlow banners, torch deprecation
    notices, converter and NNCF log lines, Python warnings): kept in a file, not on the user's terminal."""

    def __init__(self, path: Path | None):
        self.path = path   # None: nothing was captured (--verbose)

    def text(self) -> str:
        return self.path.read_text(errors="replace") if self.path and self.path.exists() else ""

    def keep(self, bundle: Path) -> Path | None:
        """Append what was captured to ``bundle/logs/third_party.log``; returns that path when there was any."""
        text = self.text()
        if not text.strip() or not bundle.is_dir():
            return None
        dest = bundle / "logs" / THIRD_PARTY_LOG
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("a") as f:
            f.write(text)
        return dest


@contextmanager
def third_party_to_file(verbose: bool = False) -> Iterator[ThirdPartyLog]:
    """Send everything written to file descriptor 2 during the block to a temporary file, while edgekit's
    own console (progress, warnings) keeps the real stderr. Why the descriptor and not ``sys.stderr``: the
    loudest writers are C++ (absl, oneDNN, TensorFlow Lite, XNNPACK) and Python loggers that captured the
    stderr stream at import; only the descriptor reaches them all. ``verbose``: capture nothing.

    The file is removed when the block ends; ``ThirdPartyLog.keep`` copies it into a bundle first. When the
    block fails with an internal error, what was captured is replayed on the real stderr ahead of the
    traceback, so a crash keeps its context; a user error (``EdgekitError``) stays the one line it is."""
    from edgekit.errors import EdgekitError

    if verbose:
        yield ThirdPartyLog(None)
        return
    fd, name = tempfile.mkstemp(prefix="edgekit-third-party-", suffix=".log")
    path = Path(name)
    sys.stderr.flush()
    saved = os.dup(2)
    real_stderr = open(saved, "w", buffering=1, closefd=False, errors="replace")
    replay = False
    try:
        os.dup2(fd, 2)
        console.file = real_stderr
        yield ThirdPartyLog(path)
    except (EdgekitError, KeyboardInterrupt):
        raise
    except BaseException:
        replay = True
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        console.file = None   # back to following sys.stderr
        real_stderr.close()
        os.close(saved)
        os.close(fd)
        if replay:
            sys.stderr.write(path.read_text(errors="replace"))
            sys.stderr.flush()
        path.unlink(missing_ok=True)
