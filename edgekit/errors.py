"""One exception type for everything a user can fix, so the CLI can print one line and exit non-zero.

Internal bugs stay ordinary exceptions (with tracebacks); anything caused by the user's input,
files, environment or network is an ``EdgekitError`` carrying what went wrong and what to do.
"""

from __future__ import annotations

import re

# Exit codes are part of the CLI contract (CI pipelines branch on them).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER_ERROR = 2
EXIT_GATE_FAILED = 3


class EdgekitError(Exception):
    """A problem the user can fix. ``str(err)`` is a single line: problem, then what to do."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, problem: str, hint: str | None = None):
        self.problem = problem.strip().replace("\n", " ")
        self.hint = hint.strip().replace("\n", " ") if hint else None
        super().__init__(self.problem + (f" — {self.hint}" if self.hint else ""))


class MissingDependency(EdgekitError):
    """An optional extra is not installed."""

    def __init__(self, package: str, extra: str, why: str):
        super().__init__(f"{why} needs the Python package '{package}'",
                         f"install it with: pip install 'edgekit[{extra}]'")


_ANSI_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def first_line(err: BaseException, limit: int = 200, typed: bool = False) -> str:
    """The first line of an exception's message, at most ``limit`` characters ("" when it has none), with
    ``typed`` prefixed by the exception's type: how a library's multi-line error becomes part of one of
    edgekit's one-line errors."""
    lines = _ANSI_COLOURS.sub("", str(err)).strip().splitlines()   # exporters colour their messages
    text = lines[0][:limit] if lines else ""
    return f"{type(err).__name__}: {text}" if typed else text


def validation_summary(err) -> str:
    """Every field a pydantic ``ValidationError`` names, on one line: the missing ones together, then each invalid
    one with its reason (``missing fields: backends, precisions; threads: Input should be a valid integer``).
    Pydantic's own text starts "2 validation errors for Target", which names no field a user could fix."""
    missing, invalid = [], []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "missing":
            missing.append(loc)
        else:
            invalid.append(f"{loc}: {e['msg']}")
    parts = ([f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"] if missing else []) + invalid
    return "; ".join(parts)
