"""ONNX Runtime latency of a PyTorch module: export through the shared exporter, time a session.

Pruning decisions (``latency_ms`` targets) and pruning reports use this, so the number is what the
ONNX Runtime artifact will run at, not what PyTorch eager does.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch.nn as nn

from edgekit.backends.onnx_export import export_onnx
from edgekit.profiling.latency import latency_stats, measure_latency
from edgekit.spec import ModelSpec


def _session(module: nn.Module, spec: ModelSpec, folder: Path, name: str, threads: int):
    from edgekit.backends.onnxruntime import OrtSession

    path = folder / f"{name}.onnx"
    export_onnx(module, spec, path)
    return OrtSession(path, threads)


def ort_latency(module: nn.Module, spec: ModelSpec, batch: int = 1, threads: int | None = None,
                runs: int = 50, warmup: int = 5, max_seconds: float = 3.0) -> dict[str, float]:
    """Latency stats (ms) of ``module`` exported to ONNX and run by ONNX Runtime."""
    threads = threads or os.cpu_count() or 1
    inputs = np.random.default_rng(0).standard_normal((batch, *spec.input_shape)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="edgekit-lat-") as tmp:
        session = _session(module, spec, Path(tmp), "model", threads)
        stats = measure_latency(session.run, inputs, warmup=warmup, runs=runs, max_seconds=max_seconds)
    return {**stats, "threads": threads}


def ort_latency_interleaved(models: dict[str, tuple[nn.Module, ModelSpec]], batch: int = 1,
                            threads: int | None = None, rounds: int = 20, runs_per_round: int = 10,
                            warmup: int = 10) -> dict[str, dict[str, float]]:
    """Latency of several models measured in alternation (round-robin), so that load from other
    processes on a shared machine hits every model alike; the fair way to compute a speed-up."""
    import time

    threads = threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="edgekit-lat-") as tmp:
        sessions, inputs = {}, {}
        for i, (name, (module, spec)) in enumerate(models.items()):
            sessions[name] = _session(module, spec, Path(tmp), f"m{i}", threads)
            inputs[name] = np.random.default_rng(0).standard_normal((batch, *spec.input_shape)).astype(np.float32)
            for _ in range(warmup):
                sessions[name].run(inputs[name])
        samples: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(rounds):
            for name, session in sessions.items():
                for _ in range(runs_per_round):
                    t0 = time.perf_counter_ns()
                    session.run(inputs[name])
                    samples[name].append((time.perf_counter_ns() - t0) / 1e6)
    return {name: {**latency_stats(s), "batch": batch, "threads": threads} for name, s in samples.items()}
