"""Shared fixtures: an isolated edgekit cache per test session, and running the CLI as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Shared fixtures from helper modules (a session fixture must be registered once to be built once).
pytest_plugins = ["bundle_fixture", "sshd_server", "emulated_pi", "real_material"]


@pytest.fixture(scope="session", autouse=True)
def edgekit_cache(tmp_path_factory) -> Path:
    """One cache for the whole session (the default teacher is trained once), isolated from the user's."""
    cache = Path(os.environ.get("EDGEKIT_TEST_CACHE") or tmp_path_factory.mktemp("edgekit-cache"))
    os.environ["EDGEKIT_CACHE"] = str(cache)
    return cache


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900
            ) -> subprocess.CompletedProcess:
    """``python -m edgekit ARGS`` in a subprocess, with this checkout first on the path."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEKIT_QUIET": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgekit", *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's digits as edgekit's DataSplits, loaded once per test module."""
    from edgekit.data import load_data

    return load_data("digits")


class Killed(Exception):
    """Stands in for SIGKILL right after an epoch checkpoint is on disk (the process state is lost; only
    the checkpoint survives, and the rerun starts from fresh seeds exactly as a new process does)."""


def killed_after_epoch_1_then_resumed(monkeypatch, run, work_dir: Path):
    """``run(work_dir)`` killed right after its epoch-1 checkpoint is written, then ``run(work_dir)`` again
    (resuming from that checkpoint); returns what the resumed run returns."""
    from edgekit.training import loop

    real_save = loop._save_state

    def save_then_die(*args):
        real_save(*args)
        if args[6]["epoch"] == 1:  # (path, model, extra, optimizer, schedule, generator, state, ...)
            raise Killed

    monkeypatch.setattr(loop, "_save_state", save_then_die)
    with pytest.raises(Killed):
        run(work_dir)
    monkeypatch.setattr(loop, "_save_state", real_save)
    return run(work_dir)
