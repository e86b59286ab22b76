"""CLI usage errors through the real ``edgekit`` command: one line saying what is wrong (plus one
pointing at ``--help``), exit code 2, no traceback, nothing on stdout.

These are also the tests that .ci/run reruns against the newest resolvable typer/click/rich/pydantic
(typer 0.29 vendors click as ``typer._click``, whose exceptions ``click.exceptions`` does not match).
"""

from __future__ import annotations

import pytest

from tests.conftest import run_cli

CASES = {
    "unknown option": (["compress", "--no-such-option"], "--no-such-option"),
    "missing argument": (["bench"], "bundle"),   # click says BUNDLE, typer._click says bundle
    "option without its value": (["compress", "-t"], "-t"),
    "value of the wrong type": (["compress", "--threads", "abc"], "--threads"),
    "unknown command": (["nosuchcmd"], "nosuchcmd"),
    "usage error with --json": (["compress", "--json", "--no-such-option"], "--no-such-option"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_usage_error_is_one_line_and_exit_2(case):
    args, needle = CASES[case]
    result = run_cli(*args, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("error: ") and needle.lower() in lines[0].lower(), lines[0]
    if len(lines) == 2:
        assert lines[1].startswith("Try 'edgekit") and lines[1].endswith("--help' for help."), lines[1]
    assert result.stdout == "", "stdout must stay clean (a piped --json reader sees nothing half-written)"


def test_help_still_exits_0():
    result = run_cli("compress", "--help", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--target" in result.stdout and "Traceback" not in result.stderr
