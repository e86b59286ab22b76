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


def _print_version(value: bool) -> None:
    if value:
        from edgekit import __version__

        print(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="print the version and exit")) -> None:
    """Options of ``edgekit`` itself, before any command (the command's own options follow it)."""


# Importing the command modules registers their commands on ``app``.
from edgekit.cli import bench, build_engine, compress, debug, inspect, split, targets  # noqa: E402,F401


# Usage errors, as raised by the click that typer uses: older typer (0.12) re-exports ``click``'s exceptions,
# newer typer (0.29) vendors click as ``typer._click``, whose classes ``click.exceptions`` does not match.
# typer.BadParameter is defined in that module either way, so its module is the one to catch from.
_click_exceptions = sys.modules[typer.BadParameter.__module__]
UsageError = _click_exceptions.UsageError
ClickException = _click_exceptions.ClickException
# click >= 8.2 signals "no arguments: show the help" with this UsageError; older click just prints the help.
NoArgsIsHelpError = getattr(_click_exceptions, "NoArgsIsHelpError", ())


PROG = "edgekit"  # also under ``python -m edgekit``, so the hints name the command users type


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C, so `edgekit ... && deploy` stops


def main() -> None:
    try:
        code = app(prog_name=PROG, standalone_mode=False)
    except EdgekitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except (KeyboardInterrupt, typer.Abort):   # typer 0.12 lets Ctrl-C through as these
        _interrupted()
    except UsageError as err:
        _usage_error(err)
    except ClickException as err:  # e.g. a file argument that cannot be opened
        print(f"error: {err.format_message()}", file=sys.stderr)
        sys.exit(err.exit_code)
    # typer 0.29 turns Ctrl-C into Exit(130), and in non-standalone mode any Exit into a returned code
    # (a command's return value is None): a code returned here is the process's exit code.
    if code == EXIT_INTERRUPTED:
        _interrupted()
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        sys.exit(code)


def _interrupted() -> None:
    print("error: interrupted (nothing half-written was left; rerun to resume from cached stages)", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


def _usage_error(err) -> None:
    """One line saying what is wrong, one pointing at the command's --help; exit 2 (click's usage code)."""
    if isinstance(err, NoArgsIsHelpError):
        err.show()  # ``edgekit`` alone: the help text is the answer
        sys.exit(err.exit_code)
    message = " ".join(err.format_message().split())
    print(f"error: {message}", file=sys.stderr)
    command = err.ctx.command_path if err.ctx is not None else PROG
    print(f"Try '{command} --help' for help.", file=sys.stderr)
    sys.exit(err.exit_code)


def fail_internal(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_INTERNAL)
