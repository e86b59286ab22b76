"""Remote bench over a loopback OpenSSH server vs local bench, same bundle, interleaved rounds.

    python -m benchmarks run remote-vs-local [--set bundle=BUNDLE] [--set rounds=3]

Starts a throwaway sshd (tests/sshd_server.py), then alternates local and remote `edgekit bench`
runs: accuracy (must be identical) and p50 latency per artifact (local vs remote: within noise when the
runner is the same). Without a bundle, the built-in demo's (digits) is made first.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.schema import Measured
from edgekit.errors import EdgekitError

ROOT = Path(__file__).resolve().parents[1]


def bench(bundle: Path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "edgekit", "bench", str(bundle), "--json", "--no-update", "--runs", "200",
                        "--max-seconds", "3", "--batch-sizes", "1,8", *extra], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "EDGEKIT_QUIET": "1"})
    if r.returncode != 0:
        raise EdgekitError(f"edgekit bench failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return json.loads(r.stdout)


def demo_bundle(work: Path) -> Path:
    """The built-in demo's bundle (digits, quickstart recipe; seconds), made once in ``work``."""
    import edgekit

    bundle = work / "demo-bundle"
    if not (bundle / "manifest.json").is_file():
        edgekit.compress(recipe="quickstart", target="x86-cpu", out=bundle, force=True)
    return bundle


def run(work: Path, bundle: str | None = None, rounds: int = 3) -> Measured:
    """The kind ``remote_vs_local``: ``bundle`` [default: the built-in demo's], ``rounds`` interleaved."""
    sys.path.insert(0, str(ROOT / "tests"))
    from sshd_server import LoopbackSshd   # the test suite's throwaway sshd

    bundle_dir = Path(bundle) if bundle else demo_bundle(work)
    with tempfile.TemporaryDirectory() as tmp:
        sshd = LoopbackSshd.start(Path(tmp) / "ssh")
        if isinstance(sshd, str):
            raise EdgekitError(f"cannot start a loopback sshd: {sshd}", "install openssh-server")
        try:
            remote_args = ["--host", f"{sshd.user}@127.0.0.1", "--port", str(sshd.port), "-i", str(sshd.user_key),
                           "--known-hosts", str(sshd.known_hosts)]
            runs: dict[str, list[dict]] = {"local": [], "remote": []}
            for _ in range(rounds):
                runs["local"].append(bench(bundle_dir))
                runs["remote"].append(bench(bundle_dir, *remote_args))
            leftovers = [str(p) for p in sshd.device_tmp.iterdir()]
        finally:
            sshd.stop()
    rows = []
    for name in runs["local"][0]["results"]:
        loc = [r["results"][name] for r in runs["local"]]
        rem = [r["results"][name] for r in runs["remote"]]
        rows.append({"artifact": name, "top1_local": loc[0]["accuracy"]["top1"], "top1_remote": rem[0]["accuracy"]["top1"],
                     "same_predictions": all(x["predictions_sha256"] == loc[0]["predictions_sha256"] for x in loc + rem),
                     "p50_local_ms": [round(x["latency"]["p50_ms"], 4) for x in loc],
                     "p50_remote_ms": [round(x["latency"]["p50_ms"], 4) for x in rem],
                     "median_ratio_remote_over_local": round(statistics.median(
                         b["latency"]["p50_ms"] / a["latency"]["p50_ms"] for a, b in zip(loc, rem)), 3)})
    return summarize({"bundle": str(bundle_dir), "rounds": rounds, "rows": rows, "device_tmp_leftovers": leftovers})


def summarize(raw: dict) -> Measured:
    rows = raw["rows"]
    return Measured(rows=rows, details={"bundle": raw["bundle"], "device_tmp_leftovers": raw["device_tmp_leftovers"]},
                    metrics={"same_predictions": all(r["same_predictions"] for r in rows),
                             "max_median_ratio_remote_over_local": max(r["median_ratio_remote_over_local"] for r in rows),
                             "device_tmp_leftovers": len(raw["device_tmp_leftovers"])},
                    notes=[f"{raw['rounds']} interleaved rounds of `edgekit bench`, local and over the loopback sshd"])
