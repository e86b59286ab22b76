"""The ``edgekit`` command: a thin typer layer over the library.

Every command lives in its own module and registers itself on ``app``; errors a user can fix
(``EdgekitError``) print one line on stderr and exit with a non-zero code, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from edgekit.errors import EXIT_INTERNAL, EdgekitError

app = typer.Typer(
    name="edgekit",
    help="Take a pretrained image classifier to an edge device: distill, prune, quantize, split, "
         "compile for the target's runtime, measure, and write a deploy bundle.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Importing the command modules registers their commands on ``app``.
from edgekit.cli import bench, compress, inspect, targets  # noqa: E402,F401


def main() -> None:
    try:
        app(standalone_mode=False)
    except EdgekitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted (nothing half-written was left; rerun to resume from cached stages)",
              file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as err:  # typer/click usage errors come here in non-standalone mode
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(130)
        raise


def fail_internal(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_INTERNAL)
