"""Output that fits: ``edgekit compress`` prints within the reader's width (the terminal's; piped: COLUMNS,
else 100) and still says, for the deployed artifact, its top-1, Δ, p50 and whether that p50 was measured;
``targets`` keeps every description at 80 columns; ``--version``; other libraries' stderr goes to a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

# Re-render a bundle's result exactly as ``edgekit compress`` prints it, in a fresh process (so the console
# width is decided as the CLI decides it, from the environment).
RENDER = ("import sys; from edgekit.manifest import read_manifest; from edgekit.cli.compress import print_result; "
          "print_result(read_manifest(sys.argv[1]), wide=sys.argv[2] == 'wide')")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The built-in digits demo on x86-cpu, piped (not a terminal), at COLUMNS=80: run once, read by all."""
    out = tmp_path_factory.mktemp("runs") / "demo"
    result = run_cli("compress", "--target", "x86-cpu", "--out", str(out), env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result, out


def _render(bundle: Path, columns: str | None, wide: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env.update(PYTHONPATH=str(ROOT), **({"COLUMNS": columns} if columns else {}))
    result = subprocess.run([sys.executable, "-c", RENDER, str(bundle), "wide" if wide else "compact"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _deployed_row_says_it_all(stdout: str, bundle: Path) -> None:
    """The deployed artifact's row carries its top-1, Δ vs the input model and p50 with its basis mark,
    and the legend says what the mark means."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    deploy = manifest["deploy"]
    assert deploy["latency_source"] == "measured here"  # a local target: the demo's p50 is measured
    rows = [line for line in stdout.splitlines() if line.startswith("│ ")]
    row = next(line for line in rows if line.split("│")[1].strip() == deploy["artifact"])
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    delta = -deploy["drop"]
    assert cells[2] == f"{deploy['top1']:.2f}"
    assert cells[3] == ("0.00" if round(delta, 2) == 0 else f"{delta:+.2f}")
    assert cells[4] == f"{deploy['p50_ms']:.3f} m"
    assert any("m measured here" in line for line in stdout.splitlines())


def _widest(stdout: str) -> int:
    return max(len(line) for line in stdout.splitlines())


def test_compress_at_80_columns_fits_and_shows_the_deployed_artifact(demo):
    result, bundle = demo
    assert _widest(result.stdout) <= 80, result.stdout
    _deployed_row_says_it_all(result.stdout, bundle)


@pytest.mark.parametrize("columns, limit", [("120", 120), (None, 100)])
def test_compress_output_follows_columns_else_100_when_piped(demo, columns, limit):
    _, bundle = demo
    stdout = _render(bundle, columns)
    # the deploy line is long: it wraps at the width, so the widest line tells the width used
    assert 80 < _widest(stdout) <= limit, stdout
    _deployed_row_says_it_all(stdout, bundle)


def test_wide_gives_every_column_without_splitting_a_number(demo):
    _, bundle = demo
    stdout = _render(bundle, "80", wide=True)
    header = " ".join(line for line in stdout.splitlines() if line.startswith("┃"))
    for column in ("runtime", "executed", "agree %", "p90 ms", "p99 ms", "on target", "estimated"):
        assert column in header
    manifest = json.loads((bundle / "manifest.json").read_text())
    for a in manifest["artifacts"]:   # each number whole, in its artifact's row
        row = next(line for line in stdout.splitlines() if line.startswith(f"│ {a['name']} "))
        assert f" {a['metrics']['latency']['p99_ms']:.3f} " in row


def test_a_top1_from_fewer_test_images_says_how_many(demo):
    """The input model is checked on a subset; beside full-split numbers its top-1 carries its image count."""
    result, bundle = demo
    manifest = json.loads((bundle / "manifest.json").read_text())
    counts = {a["name"]: a["metrics"]["accuracy"]["samples"] for a in manifest["artifacts"]
              if a["metrics"].get("accuracy")}
    full = max(counts.values())
    subset = [name for name, n in counts.items() if n < full]
    assert subset, counts   # the demo's input model is scored on INPUT_CHECK_IMAGES of its test images
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
            for line in result.stdout.splitlines() if line.startswith("│ ")}
    for name in counts:
        if name in rows:
            assert rows[name][2].endswith(f" ({counts[name]})") == (name in subset), rows[name]
    assert f"(n): top-1 on n test images, not {full}" in " ".join(result.stdout.split())


def test_rows_that_do_not_compete_fold_into_one_line(demo):
    """An artifact without accuracy is no candidate: it leaves the table for the line under it."""
    from rich.console import Console

    from edgekit.cli.compress import print_artifacts
    from edgekit.manifest import read_manifest

    _, bundle = demo
    manifest = read_manifest(bundle)
    unscored = next(a for a in manifest.artifacts if a.name != manifest.deploy.artifact and a.part == "whole")
    unscored.metrics.accuracy, unscored.metrics.not_scored = None, "profile.score: needed"
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    print_artifacts(manifest, console=console)
    text = console.export_text()
    assert not [line for line in text.splitlines() if line.startswith(f"│ {unscored.name} ")]
    assert f"not ranked: {unscored.name} (not scored: profile.score: needed)" in " ".join(text.split())
    assert _widest(text) <= 80


def test_whole_model_calibration_section_does_not_mention_head_or_tail(demo):
    _, bundle = demo
    report = (bundle / "report.md").read_text()
    assert "## Calibration" in report   # the demo quantizes to INT8: it has a calibration set
    section = report.split("## Calibration", 1)[1].split("\n## ", 1)[0]
    assert "head" not in section and "tail" not in section


def test_compress_keeps_other_libraries_off_the_terminal(demo):
    result, bundle = demo
    chatter = ("WARNING:root", "INFO:nncf", "absl::", "oneDNN", "XNNPACK delegate", "Warning:")
    assert not [line for line in result.stderr.splitlines() if any(c in line for c in chatter)], result.stderr


def test_targets_at_80_columns_keeps_every_description():
    result = run_cli("targets", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert _widest(result.stdout) <= 80
    # the second column's text, row after row: a description may wrap, never go
    column = " ".join(line.split("│")[2] for line in result.stdout.splitlines() if line.startswith("│ "))
    column = " ".join(column.split())
    for target in json.loads(run_cli("targets", "--json").stdout):
        assert " ".join(target["description"].split()) in column, target["name"]


def test_version():
    import edgekit

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout == f"edgekit {edgekit.__version__}\n"


# A run's third-party noise, each kind as libraries make it: C++ on descriptor 2, a logger that captured the
# stderr stream at import, a Python warning; then edgekit's own warning.
CHATTER = """
import logging, os, sys, warnings
from pathlib import Path
from edgekit import ui
logging.getLogger("somelib").addHandler(logging.StreamHandler(sys.stderr))
warnings.simplefilter("always")
with ui.third_party_to_file(verbose=sys.argv[2] == "verbose") as log:
    os.write(2, b"I0000 native banner\\n")
    logging.getLogger("somelib").warning("a library's log line")
    warnings.warn("a deprecation", DeprecationWarning)
    ui.warn("edgekit's own warning")
    print(log.keep(Path(sys.argv[1])))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_third_party_stderr_goes_to_the_bundle_log_unless_verbose(tmp_path, verbose):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", CHATTER, str(tmp_path), "verbose" if verbose else "quiet"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "edgekit's own warning" in result.stderr
    noise = ("I0000 native banner", "a library's log line", "a deprecation")
    log = tmp_path / "logs" / "third_party.log"
    if verbose:
        assert all(n in result.stderr for n in noise) and result.stdout.strip() == "None" and not log.exists()
    else:
        assert not [n for n in noise if n in result.stderr], result.stderr
        assert result.stdout.strip() == str(log)
        assert all(n in log.read_text() for n in noise)
