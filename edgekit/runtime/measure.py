"""Measuring a session: latency (single, interleaved, and a single budget spent in alternation), accuracy counts, process memory.

One implementation for the host (profiling, pruning targets, benchmarks) and the device runner,
so a number measured here and one measured on a device come from the same code.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

RunFn = Callable[[np.ndarray], Any]


def latency_stats(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "std_ms": float(a.std()),
            "min_ms": float(a.min()), "runs": int(len(a))}


def _timed(run: RunFn, inputs: np.ndarray, runs: int, max_seconds: float | None,
           clock: Callable[[], int]) -> list[float]:
    """Up to ``runs`` timed calls, stopping at ``max_seconds`` (wall) once 5 are in."""
    samples: list[float] = []
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    while len(samples) < runs and (len(samples) < 5 or deadline is None or time.perf_counter() < deadline):
        t0 = clock()
        run(inputs)
        samples.append((clock() - t0) / 1e6)
    return samples


def measure_latency(run: RunFn, inputs: np.ndarray, warmup: int = 10, runs: int = 100,
                    max_seconds: float = 10.0) -> dict:
    """Time ``run(inputs)``: ``warmup`` untimed runs, then up to ``runs`` timed runs or ``max_seconds``
    (at least 5 runs, so percentiles mean something)."""
    for _ in range(warmup):
        run(inputs)
    return {**latency_stats(_timed(run, inputs, runs, max_seconds, time.perf_counter_ns)),
            "batch": int(inputs.shape[0])}


def interleaved_latency(runs: dict[str, RunFn], inputs: np.ndarray | dict[str, np.ndarray], rounds: int = 20,
                        runs_per_round: int = 10, warmup: int = 10, round_warmup: int = 0,
                        max_seconds: float | None = None, clock: Callable[[], int] = time.perf_counter_ns,
                        keep_samples: bool = False, on_round: Callable[[int], None] | None = None
                        ) -> dict[str, dict]:
    """Latency of several candidates measured in alternation: every round times each candidate in
    turn (``round_warmup`` untimed calls, then ``runs_per_round`` timed ones, capped by ``max_seconds``),
    so load from other processes on a shared machine hits all alike; the fair way to compare.

    ``inputs`` is one array for all or one per name; ``clock`` is a nanosecond clock (wall time by
    default, ``time.thread_time_ns`` for on-CPU time). Per name: stats over all samples, the p50 of
    each round and their median (robust when a whole round was disturbed), and the samples if asked."""
    feeds = {name: inputs[name] if isinstance(inputs, dict) else inputs for name in runs}
    for name, run in runs.items():
        for _ in range(warmup):
            run(feeds[name])
    samples: dict[str, list[float]] = {name: [] for name in runs}
    round_p50: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            for _ in range(round_warmup):
                run(feeds[name])
            taken = _timed(run, feeds[name], runs_per_round, max_seconds, clock)
            samples[name] += taken
            round_p50[name].append(float(np.percentile(taken, 50)))
        if on_round is not None:
            on_round(r)
    out = {}
    for name in runs:
        out[name] = {**latency_stats(samples[name]), "batch": int(feeds[name].shape[0]), "rounds": rounds,
                     "round_p50_ms": round_p50[name], "median_round_p50_ms": float(np.median(round_p50[name]))}
        if keep_samples:
            out[name]["samples_ms"] = samples[name]
    return out


def alternating_latency(runs: dict[str, RunFn], inputs: np.ndarray, warmup: int = 10, max_runs: int = 100,
                        max_seconds: float = 10.0, max_rounds: int = 10) -> dict[str, dict]:
    """``measure_latency``'s budget (``warmup`` calls, then up to ``max_runs`` timed calls or ``max_seconds``
    per candidate) spent in alternation (``interleaved_latency``), so candidates that are compared with each
    other are timed under the same load. Why: timed one after the other, two INT8 files of one model read
    3% apart in one order and the other way round in the next run on a shared 2-core host, and the deploy
    choice followed the noise.

    The warm-up calls also time one call, which sets how many samples fit ``max_seconds``; they are
    spread over up to ``max_rounds`` rounds of at least 5."""
    per_call: dict[str, float] = {}
    for name, run in runs.items():
        taken = _timed(run, inputs, max(1, warmup), None, time.perf_counter_ns)
        per_call[name] = float(np.median(taken)) / 1000.0
    slowest = max(per_call.values(), default=0.0)
    samples = max(5, min(max_runs, int(max_seconds / slowest) if slowest > 0 else max_runs))
    rounds = max(1, min(max_rounds, samples // 5))
    return interleaved_latency(runs, inputs, rounds=rounds, runs_per_round=-(-samples // rounds), warmup=0)


def accuracy_counts(logits: np.ndarray, labels: np.ndarray) -> dict:
    """top-1 (and top-5 when there are more than 5 classes), in percent."""
    result = {"top1": float((logits.argmax(1) == labels).mean() * 100)}
    if logits.shape[1] > 5:
        top5 = np.argsort(-logits, axis=1)[:, :5]
        result["top5"] = float((top5 == labels[:, None]).any(1).mean() * 100)
    return result


# ------------------------------------------------------------------------------------------- memory

def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_memory() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float | None:
    kb = _status_kb("VmHWM")
    if kb is None:
        try:
            import resource

            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        except (ImportError, OSError):
            return None
    return round(kb / 1024, 1)


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else round(kb / 1024, 1)
