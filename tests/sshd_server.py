"""A real OpenSSH server on loopback for tests: throwaway host and user keys, our own config, run as
the current user on a free port. ``LoopbackSshd.start()`` returns None with a reason if it can't run."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
SFTP_SERVER_CANDIDATES = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True,
                   capture_output=True)
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class LoopbackSshd:
    root: Path
    port: int
    user: str
    user_key: Path          # private key the server accepts
    other_key: Path         # a key the server refuses
    known_hosts: Path       # contains this server's host key
    device_tmp: Path        # $TMPDIR of sessions: the "device's" temp folder
    process: subprocess.Popen

    @classmethod
    def start(cls, root: Path) -> "LoopbackSshd | str":
        """The running server, or a string saying why it cannot run here."""
        if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
            return "OpenSSH server not installed (apt install openssh-server)"
        sftp = next((p for p in SFTP_SERVER_CANDIDATES if os.path.exists(p)), None)
        if sftp is None:
            return "sftp-server not found (apt install openssh-sftp-server)"
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            try:  # privilege-separation dir sshd insists on when started as root (Debian's init makes it)
                os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
            except OSError as err:
                return f"cannot create /run/sshd for sshd as root: {err}"
        root.mkdir(parents=True, exist_ok=True)
        host_pub = _keygen(root / "host_ed25519")
        user_pub = _keygen(root / "user_ed25519")
        _keygen(root / "other_ed25519")
        (root / "authorized_keys").write_text(user_pub + "\n")
        os.chmod(root / "authorized_keys", 0o600)
        device_tmp = root / "device-tmp"
        device_tmp.mkdir()
        port = _free_port()
        user = getpass.getuser()
        config = root / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_ed25519'}",
            f"PidFile {root / 'sshd.pid'}", f"AuthorizedKeysFile {root / 'authorized_keys'}", "StrictModes no",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", f"AllowUsers {user}", "PermitRootLogin prohibit-password",
            f"SetEnv TMPDIR={device_tmp}", f"Subsystem sftp {sftp}", "LogLevel ERROR", ""]))
        (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_pub.split()[:2])}\n")
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"sshd exited: {(proc.stderr.read() or '').strip()[:300]}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            proc.terminate()
            return "sshd did not start listening within 10 s"
        return cls(root=root, port=port, user=user, user_key=root / "user_ed25519",
                   other_key=root / "other_ed25519", known_hosts=root / "known_hosts", device_tmp=device_tmp,
                   process=proc)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def session_processes(self) -> list[str]:
        """Processes still running from a bench session (anything whose command line names our device tmp)."""
        out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if str(self.device_tmp) in line or "edgekit_runtime.runner job.json" in line]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """The loopback sshd, shared by every test that uses a "device" over SSH (skips when it cannot run)."""
    server = LoopbackSshd.start(tmp_path_factory.mktemp("sshd"))
    if isinstance(server, str):
        pytest.skip(f"cannot start a loopback sshd: {server}")
    yield server
    server.stop()


def ssh_args(server: LoopbackSshd, key: Path | None = None, known_hosts: Path | None = None,
             python: str | None = None) -> list[str]:
    """The CLI's SSH options for the loopback "device". Its Python is this environment's interpreter (a venv's
    included: the system ``python3`` lacks the venv's runtimes) unless a test is about another one."""
    return ["--host", f"{server.user}@127.0.0.1", "--port", str(server.port), "--identity", str(key or server.user_key),
            "--known-hosts", str(known_hosts or server.known_hosts), "--remote-python", python or sys.executable]
