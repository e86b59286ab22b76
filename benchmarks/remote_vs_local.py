"""Remote bench over a loopback OpenSSH server vs local bench, same bundle, interleaved rounds.

    python benchmarks/remote_vs_local.py BUNDLE [ROUNDS]     # e.g. a bundle from `edgekit compress`

Starts a throwaway sshd (tests/sshd_server.py), then alternates local and remote `edgekit bench`
runs; writes benchmarks/results/remote_vs_local.{json,md}: accuracy (must be identical) and p50
latency per artifact (local vs remote: within noise when the runner is the same).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from sshd_server import LoopbackSshd  # noqa: E402


def bench(bundle: Path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "edgekit", "bench", str(bundle), "--json", "--no-update", "--runs", "200",
                        "--max-seconds", "3", "--batch-sizes", "1,8", *extra], capture_output=True, text=True,
                       cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "EDGEKIT_QUIET": "1"})
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout)


def main() -> None:
    bundle = Path(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        sshd = LoopbackSshd.start(Path(tmp) / "ssh")
        if isinstance(sshd, str):
            raise SystemExit(f"cannot start sshd: {sshd}")
        try:
            remote_args = ["--host", f"{sshd.user}@127.0.0.1", "--port", str(sshd.port), "-i", str(sshd.user_key),
                           "--known-hosts", str(sshd.known_hosts)]
            runs = {"local": [], "remote": []}
            for _ in range(rounds):
                runs["local"].append(bench(bundle))
                runs["remote"].append(bench(bundle, *remote_args))
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
    out = ROOT / "benchmarks" / "results"
    result = {"bundle": str(bundle), "rounds": rounds, "rows": rows, "device_tmp_leftovers": leftovers}
    (out / "remote_vs_local.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Remote bench (loopback sshd) vs local bench, same bundle", "",
             f"{rounds} interleaved rounds on a shared 2-core host; files left in the device temp dir: {len(leftovers)}", "",
             "| artifact | top-1 local | top-1 remote | same predictions | p50 local ms | p50 remote ms | median ratio |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['artifact']} | {r['top1_local']:.2f} | {r['top1_remote']:.2f} | {r['same_predictions']} | "
              f"{', '.join(map(str, r['p50_local_ms']))} | {', '.join(map(str, r['p50_remote_ms']))} | "
              f"{r['median_ratio_remote_over_local']} |" for r in rows]
    (out / "remote_vs_local.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
