"""A real, shaped network link on one Linux host, for testing split computing end to end.

Two network namespaces joined by a veth pair, each end shaped by ``tc``: ``netem delay D rate R``
when the kernel has sch_netem (round trip = 2 x delay); otherwise ``tbf`` limits the rate only and no
delay is added (``shaping`` says which was applied). Some VMs (e.g. Firecracker guests without modules)
ship tbf/htb but not netem. A token bucket lets a lone packet smaller than its bucket pass at once, so a
1 kB request on an idle tbf link costs nothing where a real 5 Mbit/s link takes 1.6 ms to serialize it;
the tbf fallback therefore shrinks the link's MTU (``TBF_MTU``) and bucket to a few hundred bytes, so
every request beyond one small packet is paced at the rate, as on the real link (under-counting each
transfer by at most one bucket, for split and offload alike). The tail server runs in one namespace,
the head (``edgekit split-run``) in the other, as separate processes: every byte crosses the shaped
link through the kernel's TCP stack. Needs root (CAP_NET_ADMIN) and iproute2 with sch_netem.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TBF_MTU = 296          # bytes; TCP's MSS becomes 256 B
TBF_BURST = 360        # bytes: one MTU-sized frame with its Ethernet header, and a little slack


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


def netem_available() -> bool:
    name = f"ekprobe{secrets.token_hex(3)}"
    try:
        if _run("ip", "netns", "add", name, check=False).returncode != 0:
            return False
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return _run("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                    check=False).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def netns_unavailable_reason() -> str | None:
    """None when namespaces + veth + netem work here; otherwise why not (for a pytest skip)."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed"
    name = f"ekprobe{secrets.token_hex(3)}"
    try:
        result = _run("ip", "netns", "add", name, check=False)
        if result.returncode != 0:
            return f"cannot create a network namespace ({result.stderr.strip() or 'ip netns add failed'}); needs root"
        _run("ip", "-n", name, "link", "set", "lo", "up")
        result = _run("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "5mbit",
                      "burst", "1600", "latency", "100ms", check=False)
        if result.returncode != 0:
            return f"tc tbf shaping is not available ({result.stderr.strip()})"
    except (OSError, subprocess.SubprocessError) as err:
        return f"cannot set up network namespaces: {err}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


class ShapedLink:
    """``with ShapedLink(5, 10) as link: link.split_run(bundle, ...)`` — server and client in two namespaces."""

    def __init__(self, rate_mbit: float = 5.0, delay_ms: float = 10.0, port: int = 8765):
        tag = secrets.token_hex(3)
        self.server_ns, self.client_ns = f"eksrv{tag}", f"ekcli{tag}"
        self.server_if, self.client_if = f"eks{tag}", f"ekc{tag}"
        octet = 16 + int(tag[:2], 16) % 200
        self.server_ip, self.client_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
        self.rate_mbit, self.delay_ms, self.port = rate_mbit, delay_ms, port
        self.token = secrets.token_urlsafe(32)
        self.server: subprocess.Popen | None = None
        self.server_log: Path | None = None
        self.shaping = ""

    def __enter__(self) -> "ShapedLink":
        try:
            self._setup()
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _setup(self) -> None:
        netem = netem_available()
        if netem:
            qdisc = ["netem", "delay", f"{self.delay_ms}ms", "rate", f"{self.rate_mbit}mbit", "limit", "10000"]
            self.shaping = f"netem: {self.rate_mbit} Mbit/s, {self.delay_ms} ms each way"
        else:
            qdisc = ["tbf", "rate", f"{self.rate_mbit}mbit", "burst", str(TBF_BURST), "latency", "400ms"]
            self.shaping = (f"tbf: {self.rate_mbit} Mbit/s each way, MTU {TBF_MTU} B, burst {TBF_BURST} B; "
                            "NO delay added (this kernel has no sch_netem)")
        _run("ip", "netns", "add", self.server_ns)
        _run("ip", "netns", "add", self.client_ns)
        _run("ip", "link", "add", self.server_if, "type", "veth", "peer", "name", self.client_if)
        for ns, dev, ip in ((self.server_ns, self.server_if, self.server_ip),
                            (self.client_ns, self.client_if, self.client_ip)):
            _run("ip", "link", "set", dev, "netns", ns)
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            if not netem:
                _run("ip", "-n", ns, "link", "set", dev, "mtu", str(TBF_MTU))
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", *qdisc)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), "EDGEKIT_SPLIT_TOKEN": self.token, "EDGEKIT_QUIET": "1"}

    def start_server(self, bundle: Path, threads: int = 1, extra: tuple[str, ...] = ()) -> None:
        """``edgekit serve-tail`` inside the server namespace; waits until it answers."""
        import tempfile

        self.server_log = Path(tempfile.mkstemp(prefix="serve-tail-", suffix=".log")[1])
        log = open(self.server_log, "w")
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.server_ns, sys.executable, "-m", "edgekit", "serve-tail", str(bundle),
             "--host", self.server_ip, "--port", str(self.port), "--threads", str(threads), *extra],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        probe = (f"import urllib.request; urllib.request.urlopen('http://{self.server_ip}:{self.port}/v1/health', "
                 "timeout=2).read()")
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"serve-tail exited: {self.server_log.read_text()[-500:]}")
            ok = subprocess.run(["ip", "netns", "exec", self.client_ns, sys.executable, "-c", probe],
                                capture_output=True).returncode == 0
            if ok:
                return
            time.sleep(0.5)
        raise RuntimeError("serve-tail did not come up within 120 s")

    def split_run(self, bundle: Path, data: str, limit: int = 100, offload: str = "none", threads: int = 1,
                  head_backend: str | None = "onnxruntime") -> dict:
        """Start the server if needed, then ``edgekit split-run --json`` in the client namespace."""
        if self.server is None:
            self.start_server(bundle, threads)
        cmd = ["ip", "netns", "exec", self.client_ns, sys.executable, "-m", "edgekit", "split-run", str(bundle),
               "--server", f"{self.server_ip}:{self.port}", "--data", data, "--limit", str(limit),
               "--offload", offload, "--threads", str(threads), "--json"]
        if head_backend:
            cmd += ["--head-backend", head_backend]
        result = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(f"split-run failed: {result.stderr.strip()[-800:]}")
        return {**json.loads(result.stdout), "link": self.shaping}

    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
        for ns in (self.server_ns, self.client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
