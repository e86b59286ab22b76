"""Split computing commands: ``serve-tail``, ``split-run`` and ``split-profile``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgekit.cli import app
from edgekit.cli.common import print_json, stdout, table
from edgekit.reports.tables import fmt
from edgekit.split.guard import DEFAULT_MAX_UNTRUSTED, DEFAULT_READ_TIMEOUT

TOKEN_HELP = "file holding the shared secret [default: the EDGEKIT_SPLIT_TOKEN environment variable]"


@app.command("serve-tail")
def serve_tail_command(
    bundle: Path = typer.Argument(..., help="bundle written by compress with a bottleneck stage"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (loopback by default; 0.0.0.0 exposes it)"),
    port: int = typer.Option(8765, help="TCP port"),
    token_file: Optional[Path] = typer.Option(None, help=TOKEN_HELP),
    threads: int = typer.Option(1, min=1, help="runtime threads for the tail"),
    max_batch: int = typer.Option(64, help="largest batch accepted per request"),
    max_request_bytes: Optional[int] = typer.Option(None, help="request body limit [default: max-batch images, >= 1 MiB]"),
    read_timeout: float = typer.Option(DEFAULT_READ_TIMEOUT, min=0.1, help="seconds a request may take to arrive "
                                       "(headers and body; also how long an idle connection is kept)"),
    max_untrusted: int = typer.Option(DEFAULT_MAX_UNTRUSTED, min=1, help="connections without a valid token kept "
                                      "at once; one more closes the oldest"),
) -> None:
    """Serve the tail (and the whole model, for the full-offload baseline) over HTTP (FastAPI + uvicorn).

    Example: EDGEKIT_SPLIT_TOKEN=... edgekit serve-tail runs/split --port 8765
    """
    from edgekit.split.bundle import read_token
    from edgekit.split.server import serve

    serve(bundle, host, port, read_token(token_file), threads, max_batch, max_request_bytes, read_timeout,
          max_untrusted)


@app.command("split-run")
def split_run_command(
    bundle: Path = typer.Argument(..., help="bundle written by compress with a bottleneck stage"),
    server: str = typer.Option(..., "--server", help="HOST:PORT of serve-tail"),
    data: str = typer.Option(..., "--data", "-d", help="data source; its test split is used"),
    limit: int = typer.Option(200, help="number of test images (0 = all)"),
    offload: str = typer.Option("none", help="also measure full offload, interleaved: none | raw | jpeg"),
    head_backend: Optional[str] = typer.Option(None, help="backend of the head [default: the target's first]"),
    threads: int = typer.Option(1, min=1, help="runtime threads for the head"),
    token_file: Optional[Path] = typer.Option(None, help=TOKEN_HELP),
    json_out: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Run the head here, the tail on the server; time head, transfer, tail and end to end per image."""
    from edgekit.errors import EdgekitError
    from edgekit.split.bundle import read_token
    from edgekit.split.client import run_split

    if offload not in ("none", "raw", "jpeg"):
        raise EdgekitError(f"--offload {offload!r} is not none, raw or jpeg")
    result = run_split(bundle, server, read_token(token_file), data, limit or None, offload, head_backend, threads)
    if json_out:
        print_json(result)
        return
    rows = []
    for mode, m in result["modes"].items():
        parts = [(k[:-3], v) for k, v in m.items() if k.endswith("_ms") and k != "e2e_ms"]
        rows.append([mode, fmt(m["accuracy"]["top1"]), fmt(m["bytes_per_image"], 0),
                     " + ".join(f"{name} {fmt(v['p50_ms'], 3)}" for name, v in parts),
                     fmt(m["e2e_ms"]["p50_ms"], 3), fmt(m["e2e_ms"]["p90_ms"], 3)])
    stdout.print(table(f"split-run over {server} ({result['images']} images, batch 1)",
                       ["mode", "top-1 %", "bytes/image", "p50 ms parts", "e2e p50 ms", "e2e p90 ms"], rows))


@app.command("split-profile")
def split_profile_command(
    bundle: Path = typer.Argument(..., help="bundle written by compress with a bottleneck stage"),
    bandwidths: str = typer.Option("1,5,20,100", help="link bandwidths in Mbit/s, comma-separated"),
    target: Optional[str] = typer.Option(None, help="device target [default: the bundle's]"),
    rtt_ms: float = typer.Option(20.0, help="network round-trip time added to every request"),
    out: Optional[Path] = typer.Option(None, help="directory for split_profile.json/.md/.png [default: BUNDLE/profile]"),
    threads: int = typer.Option(1, min=1, help="runtime threads"),
    json_out: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """End-to-end latency vs bandwidth for local, full offload (JPEG) and split; table + plot."""
    from edgekit.split.profile import parse_bandwidths, profile_split

    result = profile_split(bundle, parse_bandwidths(bandwidths), target, rtt_ms, out or bundle / "profile", threads)
    if json_out:
        print_json(result)
        return
    rows = [[fmt(r["bandwidth_mbps"], 1), fmt(r["local_ms"], 2), fmt(r["offload_jpeg_ms"], 2), fmt(r["split_ms"], 2),
             r["best"]] for r in result["rows"]]
    stdout.print(table(f"end-to-end latency (ms) on {result['target']} — device compute {result['device_compute']}, "
                       f"network modelled (RTT {rtt_ms} ms)", ["Mbit/s", "local", "offload JPEG", "split", "best"], rows))
    stdout.print(f"plot: {result['plot']}")
