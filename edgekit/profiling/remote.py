"""Running the benchmark runner on a device over SSH (paramiko).

Safety rules, all enforced here:
- host keys are checked (``RejectPolicy``): an unknown or changed host key is a one-line error, never
  a silent accept;
- files travel over SFTP (no shell), and the only shell commands are fixed strings with every
  variable part passed through ``shlex.quote``; artifact paths from the manifest must be relative and
  stay inside the run folder;
- everything lives in one ``mktemp -d`` folder on the device, removed in ``finally`` together with the
  runner process (killed by PID on timeout or error). The one deliberate leftover is the TensorRT
  engine cache (``~/.cache/edgekit/trt``), so a Jetson does not rebuild engines on every run.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from edgekit.bundle import bundle_file, write_json
from edgekit.errors import EdgekitError, MissingDependency, first_line
from edgekit.profiling.bench import runner_command, shipped_files

REMOTE_PREFIX = "edgekit-bench."


@dataclass
class SshDevice:
    user: str | None
    host: str
    port: int = 22
    identity: Path | None = None
    known_hosts: Path | None = None
    python: str = "python3"
    timeout: float = 900.0
    connect_timeout: float = 15.0

    @classmethod
    def parse(cls, spec: str, **kwargs) -> "SshDevice":
        user, _, host = spec.rpartition("@")
        if not host or any(c.isspace() for c in spec):
            raise EdgekitError(f"--host {spec!r} is not user@host", "e.g. --host pi@raspberrypi.local")
        identity = kwargs.get("identity")
        if identity is not None and not Path(identity).expanduser().is_file():
            raise EdgekitError(f"--identity {identity} does not exist", "give the path of your SSH private key")
        known = kwargs.get("known_hosts")
        if known is not None and not Path(known).expanduser().is_file():
            raise EdgekitError(f"--known-hosts {known} does not exist", "give an OpenSSH known_hosts file")
        return cls(user=user or None, host=host, **kwargs)

    def describe(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != 22 else ""
        return f"ssh://{user}{self.host}{port}"

    # --------------------------------------------------------------------------------- connection

    def connect(self):
        try:
            import paramiko
        except ImportError:
            raise MissingDependency("paramiko", "remote", "benchmarking over SSH") from None

        client = paramiko.SSHClient()
        known = Path(self.known_hosts).expanduser() if self.known_hosts else Path("~/.ssh/known_hosts").expanduser()
        if self.known_hosts:
            client.load_host_keys(str(known))
        else:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        name = self.describe()
        try:
            client.connect(self.host, port=self.port, username=self.user,
                           key_filename=str(Path(self.identity).expanduser()) if self.identity else None,
                           allow_agent=self.identity is None, look_for_keys=self.identity is None,
                           timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout)
        except paramiko.BadHostKeyException:
            client.close()
            raise EdgekitError(f"the host key of {self.host}:{self.port} does not match {known}",
                               "the device was reinstalled or someone is in between; check it, then fix "
                               "the entry with ssh-keygen -R") from None
        except paramiko.AuthenticationException:
            client.close()
            raise EdgekitError(f"{name} refused the SSH key" + (f" {self.identity}" if self.identity else "s offered"),
                               "check --identity and that its public key is in the device's ~/.ssh/authorized_keys"
                               ) from None
        except paramiko.SSHException as err:
            client.close()
            if "known_hosts" in str(err) or "not found in" in str(err):
                raise EdgekitError(f"unknown host key for {self.host}:{self.port} (not in {known})",
                                   "verify the device by connecting once with ssh, or pass --known-hosts FILE"
                                   ) from None
            raise EdgekitError(f"SSH to {name} failed: {first_line(err)}") from None
        except socket.gaierror:
            client.close()
            raise EdgekitError(f"cannot resolve host '{self.host}'", "check the --host name") from None
        except (OSError, EOFError) as err:  # refused, unreachable, timed out
            client.close()
            raise EdgekitError(f"cannot connect to {self.host}:{self.port}: {first_line(err) or type(err).__name__}",
                               "check --host/--port and that sshd runs on the device") from None
        return client

    # --------------------------------------------------------------------------------------- run

    @contextlib.contextmanager
    def connected(self) -> Iterator:
        client = self.connect()
        try:
            yield client
        finally:
            client.close()

    def run(self, client, job: dict, workdir: Path, bundle: Path, on_line: Callable[[str], None]) -> dict:
        """Copy the runtime package + job + eval inputs (when the job has data) + artifacts, run, fetch
        results.json, clean up."""
        files = [*shipped_files()] + ([(workdir / job["data"], job["data"])] if job.get("data") else [])
        for art in job["artifacts"]:
            for rel in art.get("files") or [art["path"]]:
                # verified by bench_bundle (inside the bundle, no links, sha256 as in the manifest)
                files.append((bundle_file(bundle, rel, f"artifact {art['name']}"), "artifacts/" + _safe_relative(rel)))
        job = {**job, "artifact_root": "artifacts"}
        write_json(workdir / "job.json", job)
        files.append((workdir / "job.json", "job.json"))
        for local, _ in files:
            if not local.is_file():
                raise EdgekitError(f"bundle file {local} is missing", "rebuild the bundle with edgekit compress")

        remote_dir = None
        try:
            remote_dir = self._mktemp(client)
            sftp = client.open_sftp()
            try:
                made = {remote_dir}
                for local, rel in files:
                    target = posixpath.join(remote_dir, rel)
                    _sftp_makedirs(sftp, posixpath.dirname(target), made)
                    sftp.put(str(local), target)
                code, stderr = self._execute(client, remote_dir, on_line)
                out = workdir / "results.json"
                try:
                    sftp.get(posixpath.join(remote_dir, "results.json"), str(out))
                except OSError:
                    raise self._runner_failed(code, stderr) from None
            finally:
                sftp.close()
            results = json.loads(out.read_text())
            results["exit_code"] = code
            return results
        finally:
            self._cleanup(client, remote_dir)

    def _exec(self, client, command: str, timeout: float = 60.0) -> tuple[int, str, str]:
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        out, err = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
        return stdout.channel.recv_exit_status(), out, err

    def _mktemp(self, client) -> str:
        code, out, err = self._exec(client, f'mktemp -d "${{TMPDIR:-/tmp}}/{REMOTE_PREFIX}XXXXXXXX"')
        path = out.strip()
        if code != 0 or not path.startswith("/") or "\n" in path or REMOTE_PREFIX not in path:
            raise EdgekitError(f"could not create a temp folder on {self.describe()}: {(err or out).strip()[:200]}")
        return path

    def _execute(self, client, remote_dir: str, on_line: Callable[[str], None]) -> tuple[int, str]:
        """Runs the runner; the first stdout line is its PID (``echo $$`` then ``exec``), used to kill it
        on timeout or interruption."""
        # TMPDIR inside the run folder: runtimes drop files there (ONNX Runtime writes a .ses file), and
        # they must go away with it.
        command = (f"cd {shlex.quote(remote_dir)} && mkdir -p tmp && TMPDIR={shlex.quote(remote_dir + '/tmp')} && "
                   f"export TMPDIR && echo $$ && exec {shlex.join(runner_command(self.python))}")
        transport = client.get_transport()
        channel = transport.open_session(timeout=self.connect_timeout)
        channel.exec_command(command)
        deadline = time.monotonic() + self.timeout
        buffer, stderr, pid = b"", b"", None
        try:
            while True:
                if channel.recv_ready():
                    buffer += channel.recv(65536)
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        text = line.decode(errors="replace")
                        if pid is None and text.strip().isdigit():
                            pid = int(text.strip())
                        else:
                            on_line(text)
                while channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(65536)
                if channel.exit_status_ready() and not channel.recv_ready():
                    break
                if time.monotonic() > deadline:
                    raise EdgekitError(f"the benchmark on {self.describe()} did not finish within {self.timeout:.0f} s",
                                       "raise --timeout, or lower --runs/--max-seconds/--limit") from None
                time.sleep(0.05)
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(65536)
            code = channel.recv_exit_status()
        except BaseException:
            if pid is not None:
                self._kill(client, pid)
            raise
        finally:
            channel.close()
        return code, stderr.decode(errors="replace")

    def _runner_failed(self, code: int, stderr: str) -> EdgekitError:
        where = self.describe()
        if code == 127:
            return EdgekitError(f"'{self.python}' was not found on {where}",
                                "install Python 3 there, or pass --remote-python /path/to/python")
        if "No module named 'numpy'" in stderr:
            return EdgekitError(f"{where} lacks numpy, which the benchmark runner needs",
                                f"install it there: {self.python} -m pip install numpy")
        last = (stderr.strip().splitlines() or [f"exit code {code}"])[-1]
        return EdgekitError(f"the benchmark runner failed on {where}: {last[:300]}")

    def _kill(self, client, pid: int) -> None:
        try:
            self._exec(client, f"kill -TERM {int(pid)} 2>/dev/null; sleep 1; kill -KILL {int(pid)} 2>/dev/null; true",
                       timeout=15)
        except Exception:  # noqa: BLE001 - best effort while already failing
            pass

    def _cleanup(self, client, remote_dir: str | None) -> None:
        if remote_dir and REMOTE_PREFIX in remote_dir:
            try:
                self._exec(client, f"rm -rf -- {shlex.quote(remote_dir)}", timeout=60)
            except Exception:  # noqa: BLE001 - connection may be gone; nothing more we can do
                pass


def _safe_relative(rel: str) -> str:
    path = PurePosixPath(rel.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise EdgekitError(f"artifact path {rel!r} in the manifest leaves the bundle", "the bundle is corrupt")
    return str(path)


def _sftp_makedirs(sftp, path: str, made: set[str]) -> None:
    if path in made:
        return
    parent = posixpath.dirname(path)
    if parent and parent != path:
        _sftp_makedirs(sftp, parent, made)
    try:
        sftp.stat(path)
    except OSError:
        sftp.mkdir(path, mode=0o700)
    made.add(path)


__all__ = ["SshDevice"]
