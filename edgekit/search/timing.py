"""How the latency-budget search times a candidate: through the target's own runtime and precision on this
host (a local target), on the device over SSH (``--host``), or with the labelled roofline estimate.

Measured candidates are compiled by the same backends as the bundle's artifacts and timed by the same
runner ``edgekit bench`` ships (``edgekit_runtime.runner``, random inputs: latency only), so a search
number and a bench number of the same file are the same measurement. One runner job per pruning level
(all of its runtimes and precisions), so each level pays the runner's start-up once.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgekit.backends import BACKENDS, CompileRequest
from edgekit.decisions import ESTIMATED, MEASURED_HERE
from edgekit.errors import EdgekitError, first_line
from edgekit.models.loaded import LoadedModel
from edgekit.profiling.bench import BenchSettings, run_local, runner_job
from edgekit.profiling.estimate import estimate_module
from edgekit.recipe import Recipe
from edgekit.target import Target


@dataclass
class Timing:
    p50_ms: float | None
    basis: str
    error: str | None = None


class CandidateTimer:
    """Times one model (a pruned candidate) for several (backend, precision) pairs. Subclasses say how."""

    basis: str

    def time(self, model: LoadedModel, combos: list[tuple[str, str]]) -> list[Timing]:
        raise NotImplementedError

    @contextlib.contextmanager
    def session(self) -> Iterator["CandidateTimer"]:
        """Resources held for the whole search (a temp folder, an SSH connection)."""
        yield self


class EstimateTimer(CandidateTimer):
    """The roofline estimate of the PyTorch model at each precision (no file is built: a remote target
    without ``--host``). Backends do not change the estimate."""

    def __init__(self, target: Target):
        self.target = target
        self.basis = f"{ESTIMATED} ({target.name})"

    def time(self, model: LoadedModel, combos: list[tuple[str, str]]) -> list[Timing]:
        out = []
        for _, precision in combos:
            try:
                est = estimate_module(model.module, model.spec, self.target, precision)
                out.append(Timing(float(est["latency_ms"]), self.basis))
            except Exception as err:  # noqa: BLE001 - one candidate without an estimate is a trace row, not a stop
                out.append(Timing(None, self.basis, f"no estimate: {first_line(err) or type(err).__name__}"))
        return out


class RunnerTimer(CandidateTimer):
    """Compiles each (backend, precision) into a scratch folder and times the files with the bench runner,
    here (``remote`` None) or on ``remote`` (an ``SshDevice``) over one SSH connection."""

    def __init__(self, target: Target, recipe: Recipe, calibration: np.ndarray | None, runs: int,
                 max_seconds: float, threads: int | None, remote=None):
        self.target, self.recipe, self.calibration = target, recipe, calibration
        self.remote = remote
        self.settings = BenchSettings(warmup=max(3, runs // 10), runs=runs, max_seconds=max_seconds,
                                      threads=None if remote is not None else threads)
        self.where = remote.describe() if remote is not None else "local"
        self.basis = MEASURED_HERE if remote is None else f"measured on the device ({self.where})"
        self._n = 0
        self._dir: Path | None = None
        self._client = None

    @contextlib.contextmanager
    def session(self) -> Iterator["RunnerTimer"]:
        with tempfile.TemporaryDirectory(prefix="edgekit-search-") as tmp, \
                (self.remote.connected() if self.remote is not None else contextlib.nullcontext()) as client:
            self._dir, self._client = Path(tmp), client
            try:
                yield self
            finally:
                self._dir, self._client = None, None

    def time(self, model: LoadedModel, combos: list[tuple[str, str]]) -> list[Timing]:
        assert self._dir is not None, "RunnerTimer.time outside session()"
        self._n += 1
        level_dir = self._dir / f"level{self._n}"
        built, out = [], [Timing(None, self.basis) for _ in combos]
        for i, (backend, precision) in enumerate(combos):
            request = CompileRequest(out_dir=level_dir, target=self.target,
                                     options=self.recipe.compile.options.for_backends(),
                                     calibration=self.calibration if precision == "int8" else None, subdir=f"c{i}")
            try:
                artifact = BACKENDS.get(backend)().compile(model, precision, request)
            except EdgekitError as err:
                out[i] = Timing(None, self.basis, f"{backend} {precision}: {err.problem}")
                continue
            if not artifact.runnable_here and self.remote is None:   # TensorRT: builds on the device
                est = EstimateTimer(self.target).time(model, [(backend, precision)])[0]
                out[i] = Timing(est.p50_ms, est.basis, est.error)
                continue
            built.append((i, artifact.model_copy(update={"name": f"c{i}-{artifact.name}"})))
        if not built:
            return out
        job = {**runner_job([a for _, a in built], self.settings, self.where, []), "data": None}
        work = level_dir / "work"
        work.mkdir(parents=True, exist_ok=True)
        if self.remote is None:
            results = run_local(job, work, level_dir, lambda line: None)
        else:
            results = self.remote.run(self._client, job, work, level_dir, lambda line: None)
        for i, artifact in built:
            r = results["results"].get(artifact.name, {})
            p50 = (r.get("latency") or {}).get("p50_ms")
            out[i] = Timing(float(p50) if p50 is not None else None, self.basis,
                            None if p50 is not None else r.get("error", "not timed"))
        return out


def make_timer(target: Target, recipe: Recipe, calibration: np.ndarray | None, runs: int, max_seconds: float,
               threads: int | None, remote=None) -> tuple[CandidateTimer, bool]:
    """(timer, measured): the device over SSH when ``remote`` is given, this host for a local target, else
    the labelled estimate (with a warning saying so: a search on estimates is only as good as the estimator)."""
    if remote is not None or target.reach == "local":
        return RunnerTimer(target, recipe, calibration, runs, max_seconds, threads, remote), True
    from edgekit import ui
    from edgekit.decisions import estimate_error

    ui.warn(f"{target.name} is reached over SSH and no --host was given: the latency-budget search ranks candidates "
            f"on the roofline ESTIMATE (about ±{estimate_error(target):.0%}), not on measurements; pass --host "
            "user@device to measure on the device while searching")
    return EstimateTimer(target), False
