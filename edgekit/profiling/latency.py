"""Latency through a runtime session: warm-up, then timed runs until N runs or a time budget."""

from __future__ import annotations

import platform
import time
from typing import Callable

import numpy as np


def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "std_ms": float(a.std()),
            "min_ms": float(a.min()), "runs": int(len(a))}


def measure_latency(run: Callable[[np.ndarray], object], inputs: np.ndarray, warmup: int = 10, runs: int = 100,
                    max_seconds: float = 10.0) -> dict[str, float]:
    """Time ``run(inputs)``; stops at ``runs`` timed runs or ``max_seconds`` (at least 5 runs)."""
    for _ in range(warmup):
        run(inputs)
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < runs and (len(samples) < 5 or time.perf_counter() < deadline):
        t0 = time.perf_counter_ns()
        run(inputs)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return {**latency_stats(samples), "batch": int(inputs.shape[0])}


def host_identity() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    import os

    return {"hostname": platform.node(), "cpu": cpu, "cores": str(os.cpu_count()),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}
