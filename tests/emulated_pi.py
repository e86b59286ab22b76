"""An emulated Raspberry Pi for tests: Debian bookworm's arm64 Python 3.11 with numpy, LiteRT and ONNX Runtime
under QEMU user mode, built (once, cached) by ``.ci/emulated-pi.sh``. Served behind the loopback sshd
(``ssh_args(sshd, python=emulated_pi)``), it is a device whose runner executes ARM code: accuracy there is
the ARM kernels', latency is labelled ``emulated``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "emulated-pi.sh"


def build_emulated_pi(timeout: int = 600) -> str:
    """The wrapper's path (``<sysroot>/python3``); the script's last error line as a skip reason otherwise."""
    if not shutil.which("apt-get") and not shutil.which("qemu-aarch64-static"):
        pytest.skip("emulated Pi: needs qemu-user-static, or apt-get to install it")
    try:
        proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        pytest.skip(f"emulated Pi: .ci/emulated-pi.sh did not finish within {timeout} s")
    wrapper = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode != 0 or not os.access(wrapper, os.X_OK):
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        pytest.skip(f"emulated Pi unavailable (.ci/emulated-pi.sh): {last[:200]}")
    return wrapper


@pytest.fixture(scope="session")
def emulated_pi() -> str:
    """The emulated Pi's Python: pass it as ``--remote-python`` (skips when it cannot be built here)."""
    return build_emulated_pi()
