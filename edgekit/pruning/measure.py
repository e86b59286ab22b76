"""ONNX Runtime latency of a PyTorch module: export through the shared exporter, time a session of
the runtime layer (``edgekit.runtime``).

Pruning decisions (``latency_ms`` targets) and pruning reports use this, so the number is what the
ONNX Runtime artifact will run at, not what PyTorch eager does.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch.nn as nn

from edgekit.models.onnx_export import export_onnx
from edgekit.errors import MissingDependency
from edgekit.runtime import MissingRuntime, OrtSession, interleaved_latency, measure_latency
from edgekit.spec import ModelSpec


@contextlib.contextmanager
def _sessions(models: dict[str, tuple[nn.Module, ModelSpec]], threads: int) -> Iterator[dict[str, OrtSession]]:
    """One ONNX Runtime session per module, exported into a folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="edgekit-lat-") as tmp:
        sessions = {}
        for i, (name, (module, spec)) in enumerate(models.items()):
            path = Path(tmp) / f"m{i}.onnx"
            export_onnx(module, spec, path)
            try:
                sessions[name] = OrtSession(path, threads)
            except MissingRuntime as err:
                raise MissingDependency(err.pip, "onnx", "measuring ONNX Runtime latency") from None
        yield sessions


def _inputs(spec: ModelSpec, batch: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, *spec.input_shape)).astype(np.float32)


def ort_latency(module: nn.Module, spec: ModelSpec, batch: int = 1, threads: int | None = None,
                runs: int = 50, warmup: int = 5, max_seconds: float = 3.0) -> dict[str, float]:
    """Latency stats (ms) of ``module`` exported to ONNX and run by ONNX Runtime."""
    threads = threads or os.cpu_count() or 1
    with _sessions({"model": (module, spec)}, threads) as sessions:
        stats = measure_latency(sessions["model"].run, _inputs(spec, batch), warmup=warmup, runs=runs,
                                max_seconds=max_seconds)
    return {**stats, "threads": threads}


def ort_latency_interleaved(models: dict[str, tuple[nn.Module, ModelSpec]], batch: int = 1,
                            threads: int | None = None, rounds: int = 20, runs_per_round: int = 10,
                            warmup: int = 10) -> dict[str, dict[str, float]]:
    """Latency of several models measured in alternation (``interleaved_latency``), so that load from
    other processes on a shared machine hits every model alike; the fair way to compute a speed-up."""
    threads = threads or os.cpu_count() or 1
    with _sessions(models, threads) as sessions:
        lat = interleaved_latency({name: s.run for name, s in sessions.items()},
                                  {name: _inputs(spec, batch) for name, (_, spec) in models.items()},
                                  rounds=rounds, runs_per_round=runs_per_round, warmup=warmup)
    return {name: {**stats, "threads": threads} for name, stats in lat.items()}
