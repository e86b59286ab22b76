"""``edgekit bench BUNDLE``: measure every artifact of a bundle here, or on a device over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgekit.cli import app
from edgekit.cli.common import HOST, IDENTITY, KNOWN_HOSTS, PORT, REMOTE_PYTHON, print_fitted, print_json, stdout
from edgekit.errors import EdgekitError
from edgekit.reports.tables import BENCH_COLUMNS, ESTIMATE_COLUMNS, bench_rows, bench_title, estimate_rows


# Left out first where the bench table does not fit the width: the spread, then what the rest implies.
BENCH_OPTIONAL = ["std ms", "mean ms", "Δ final pt", "p90 ms", "runtime", "status", "peak MB", "throughput"]


def parse_batch_sizes(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        sizes = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise EdgekitError(f"--batch-sizes {text!r} is not a list of batch sizes", "use e.g. 1,8,32")
    return sizes


@app.command("bench")
def bench_command(
    bundle: Path = typer.Argument(..., help="bundle directory written by `edgekit compress`"),
    host: Optional[str] = HOST,
    port: int = PORT,
    identity: Optional[Path] = IDENTITY,
    known_hosts: Optional[Path] = KNOWN_HOSTS,
    remote_python: str = REMOTE_PYTHON,
    timeout: float = typer.Option(900, "--timeout", help="seconds before the remote run is stopped"),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="data source for accuracy [default: the bundle's]"),
    limit: Optional[int] = typer.Option(None, "--limit", help="evaluate on at most this many test images"),
    artifact: Optional[List[str]] = typer.Option(None, "--artifact", "-a", help="only these artifacts (repeatable)"),
    warmup: int = typer.Option(10, help="untimed warm-up runs"),
    runs: int = typer.Option(100, help="timed runs (stops earlier at --max-seconds)"),
    max_seconds: float = typer.Option(5.0, help="time budget per artifact for timed runs"),
    batch: int = typer.Option(1, help="batch size for the latency numbers"),
    batch_sizes: Optional[str] = typer.Option(None, help="throughput batch sizes, e.g. 1,8,32 [default: target's]"),
    threads: Optional[int] = typer.Option(None, min=1, help="runtime threads [default: all cores of the machine]"),
    no_update: bool = typer.Option(False, "--no-update", help="do not write results into the bundle"),
    json_out: bool = typer.Option(False, "--json", help="print results as JSON on stdout"),
) -> None:
    """Benchmark every artifact of BUNDLE through its runtime: latency percentiles, throughput at batch
    sizes, peak memory and accuracy. Results go into the bundle's manifest.json and reports.

    Examples:

      edgekit bench runs/fm

      edgekit bench runs/fm --host pi@raspberrypi.local -i ~/.ssh/id_ed25519
    """
    import edgekit
    from edgekit.manifest import read_manifest
    from edgekit.profiling.bench import failed_artifacts

    entry = edgekit.bench(bundle, host, port=port, identity=identity, known_hosts=known_hosts,
                          remote_python=remote_python, timeout=timeout, data=data, limit=limit,
                          artifacts=artifact or [], warmup=warmup, runs=runs, max_seconds=max_seconds, batch=batch,
                          batch_sizes=parse_batch_sizes(batch_sizes), threads=threads, update=not no_update)
    failed = failed_artifacts(entry)  # raised after the results are printed and kept
    if json_out:
        print_json(entry.model_dump(mode="json", exclude_none=True))
        if failed:
            raise failed
        return
    artifacts = read_manifest(bundle).artifacts
    if entry.results:
        print_fitted(bench_title(entry), BENCH_COLUMNS, bench_rows(artifacts, entry), BENCH_OPTIONAL)
    est = estimate_rows(artifacts, [entry])
    if entry.estimates and est:
        print_fitted("estimated (not measured: these artifacts cannot run here)", ESTIMATE_COLUMNS, est,
                     ["model", "compute-bound layers", "runtime"])
    if not no_update:
        stdout.print(f"results merged into {bundle / 'manifest.json'} and {bundle / 'report.html'}")
    if failed:
        raise failed
