"""``edgekit bench``: measure every artifact of a bundle through its runtime, here or on a device.

Both paths ship the same files - the ``edgekit.runtime`` package (stdlib + numpy + runtime), copied
as ``edgekit_runtime/`` into a work folder - and run its runner there: locally in a subprocess,
remotely over SSH (``remote.py``). This module prepares the job (model-ready eval
inputs as ``eval.npz``, the artifact list, settings), turns the runner's progress lines into a
progress bar, attaches estimates for artifacts that cannot run, and merges results into the bundle.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgekit import ui
from edgekit.bundle import verified_file, verify_artifact, write_json
from edgekit.errors import EdgekitError
from edgekit.manifest import ArtifactRecord, BenchEntry, Manifest, read_manifest, write_manifest
from edgekit.runtime import EXIT_MISSING_RUNTIME, device_identity, package_files

SHIPPED_PACKAGE = "edgekit_runtime"


def shipped_files() -> list[tuple[Path, str]]:
    """(local file, path in the work folder) for every file the runner needs: the runtime package."""
    return [(f, f"{SHIPPED_PACKAGE}/{f.name}") for f in package_files()]


def runner_command(python: str) -> list[str]:
    """How the work folder's runner is started, here and on a device (cwd: the work folder)."""
    return [python, "-m", f"{SHIPPED_PACKAGE}.runner", "job.json", "--out", "results.json"]


@dataclass
class BenchSettings:
    warmup: int = 10
    runs: int = 100
    max_seconds: float = 5.0
    batch: int = 1
    batch_sizes: list[int] = field(default_factory=list)   # [] -> the target's batch list
    threads: int | None = None                            # None -> all cores of the machine that runs it
    eval_batch: int = 64
    data: str | None = None                               # None -> the bundle's data source
    limit: int | None = None                              # eval images (None: the whole test split)
    artifacts: list[str] = field(default_factory=list)    # names to bench ([] -> all)
    latency_only: bool = False                            # batch-1 latency on random inputs: no data, no throughput


def select_artifacts(manifest: Manifest, names: list[str], remote: bool
                     ) -> tuple[list[ArtifactRecord], list[ArtifactRecord]]:
    """(artifacts to run, artifacts that cannot run here). On a device everything is attempted."""
    known = {a.name: a for a in manifest.artifacts}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise EdgekitError(f"no artifact named {', '.join(unknown)} in the bundle",
                           f"artifacts: {', '.join(known) or 'none'}")
    chosen = [known[n] for n in names] if names else list(known.values())
    if remote:
        return chosen, []
    return [a for a in chosen if a.runnable_here], [a for a in chosen if not a.runnable_here]


def write_eval_inputs(manifest: Manifest, source: str | None, limit: int | None, path: Path) -> dict:
    """Model-ready test inputs + labels (float32 NCHW, through the bundle's ModelSpec) -> ``path`` (.npz)."""
    from edgekit.data import load_data_for
    from edgekit.data.core import prepared_batches

    spec = manifest.final_model.spec
    source = source or manifest.data.source
    data = load_data_for(source, spec)  # decoded as in training/evaluation: the spec's resize + crop
    if data.num_classes != spec.num_classes:
        raise EdgekitError(f"data source '{source}' has {data.num_classes} classes but the model has "
                           f"{spec.num_classes}", "bench with the data the bundle was built for")
    xs, ys = [], []
    for x, y in prepared_batches(data.test, spec, 256, limit):
        xs.append(x.numpy().astype(np.float32))
        ys.append(y.numpy().astype(np.int64))
    np.savez(path, inputs=np.concatenate(xs), labels=np.concatenate(ys))
    return {"source": source, "split": "test", "samples": int(sum(len(y) for y in ys)),
            "transform": spec.transform()}


JOB_FIELDS = {"name", "backend", "runtime", "precision", "path", "files", "layout", "input_shape", "meta"}


def runner_job(artifacts: list, settings: BenchSettings, where: str, batch_sizes: list[int]) -> dict:
    """The runner's job file for ``artifacts`` (manifest records or freshly compiled ``Artifact``s):
    what ``edgekit bench`` and the latency-budget search both send to the runner."""
    return {"artifacts": [a.model_dump(mode="json", include=JOB_FIELDS) for a in artifacts],
            "data": "eval.npz", "warmup": settings.warmup, "runs": settings.runs,
            "max_seconds": settings.max_seconds, "batch": settings.batch, "batch_sizes": batch_sizes,
            "threads": settings.threads, "eval_batch": settings.eval_batch, "where": where,
            "engine_cache": "~/.cache/edgekit/trt"}


def make_job(manifest: Manifest, artifacts: list[ArtifactRecord], settings: BenchSettings, where: str) -> dict:
    return runner_job(artifacts, settings, where, settings.batch_sizes or list(manifest.target.input.batch or [1]))


class ProgressSink:
    """Feeds the runner's JSON progress lines into a progress bar (one step per artifact)."""

    def __init__(self, bar):
        self.bar = bar

    def __call__(self, line: str) -> None:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return
        if event.get("event") == "phase":
            self.bar.advance(0, artifact=event["artifact"], phase=event["phase"])
        elif event.get("event") == "done":
            self.bar.advance(1, artifact=event["artifact"], phase="done")


def run_local(job: dict, workdir: Path, bundle: Path, on_line: Callable[[str], None]) -> dict:
    """Runs the shipped runner in a subprocess on this host (artifacts read in place from the bundle)."""
    job = {**job, "artifact_root": str(bundle.resolve())}
    write_json(workdir / "job.json", job)
    for local, rel in shipped_files():
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, workdir / rel)
    out = workdir / "results.json"
    (workdir / "tmp").mkdir(exist_ok=True)  # runtimes' temp files (ONNX Runtime's .ses) go with the workdir
    proc = subprocess.Popen(runner_command(sys.executable), cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(workdir / "tmp")})
    assert proc.stdout is not None
    for line in proc.stdout:
        on_line(line)
    stderr = proc.stderr.read() if proc.stderr else ""
    code = proc.wait()
    if not out.is_file():
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgekitError(f"benchmark runner failed (exit {code}): {last}")
    results = json.loads(out.read_text())
    results["exit_code"] = code
    return results


def missing_runtime_error(results: dict, where: str) -> EdgekitError:
    missing = {r["missing_runtime"]: r["install"] for r in results["results"].values() if r.get("missing_runtime")}
    runtime, package = next(iter(missing.items()))
    return EdgekitError(f"{where} lacks the runtime '{runtime}' needed by the bundle's artifacts",
                        f"install {package} there")


def bench_bundle(bundle: Path, settings: BenchSettings, remote=None, update_bundle: bool = True) -> BenchEntry:
    """Benchmark a bundle; returns the bench entry (also merged into manifest.json and the reports)."""
    manifest = read_manifest(bundle)
    artifacts, not_here = select_artifacts(manifest, settings.artifacts, remote is not None)
    where = remote.describe() if remote is not None else "local"
    if not artifacts and not not_here:
        raise EdgekitError(f"bundle {bundle} has no artifacts to benchmark")
    for art in artifacts:  # before any file is run here or uploaded to a device
        verify_artifact(bundle, art)
    results: dict = {"results": {}, "device": device_identity()}
    data_info: dict = {}
    if artifacts:
        # Connect before the slow part (data preparation), so a wrong host or key fails at once.
        with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp, \
                (remote.connected() if remote is not None else contextlib.nullcontext()) as client:
            work = Path(tmp)
            if settings.latency_only:   # as the latency-budget search times its candidates
                data_info = {"source": None, "note": "latency only (random inputs)"}
                job = {**runner_job(artifacts, settings, where, []), "data": None}
            else:
                ui.info(f"preparing eval inputs from {settings.data or manifest.data.source}")
                data_info = write_eval_inputs(manifest, settings.data, settings.limit, work / "eval.npz")
                job = make_job(manifest, artifacts, settings, where)
            with ui.progress(f"bench {where}", total=len(artifacts)) as bar:
                sink = ProgressSink(bar)
                if remote is None:
                    results = run_local(job, work, bundle, sink)
                else:
                    results = remote.run(client, job, work, bundle, sink)
        if results.get("exit_code") == EXIT_MISSING_RUNTIME:
            raise missing_runtime_error(results, "this host" if remote is None else remote.describe())
    entry = BenchEntry(where=where, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       device=results["device"], data=data_info,
                       settings={k: v for k, v in settings.__dict__.items() if k not in ("data", "artifacts")},
                       results=results["results"],
                       estimates=estimates_for(manifest, not_here, bundle) if not_here else None)
    if update_bundle:
        merge_into_bundle(bundle, entry)
    return entry


def median_entry(entries: list[BenchEntry]) -> BenchEntry:
    """One entry from several timings of the same files by the same runner: per artifact, the first take's
    result (its accuracy, where that take scored the files) with the latency of the take whose p50 is the
    median (an odd number of takes), every take's p50 in ``latency.retimed_p50_ms``, in order. Why the median:
    one reading through a busy moment of a shared host is an outlier; a verdict on the median needs most takes
    to agree, where "the fastest take" would be a retry until it passes."""
    first = entries[0]
    results: dict[str, dict] = {}
    for name, result in first.results.items():
        takes = [e.results[name] for e in entries
                 if name in e.results and (e.results[name].get("latency") or {}).get("p50_ms") is not None]
        results[name] = copy.deepcopy(result)
        if takes:
            ordered = sorted(takes, key=lambda r: r["latency"]["p50_ms"])
            results[name]["latency"] = {**copy.deepcopy(ordered[(len(ordered) - 1) // 2]["latency"]),
                                        "retimed_p50_ms": [t["latency"]["p50_ms"] for t in takes]}
    return first.model_copy(update={"results": results, "settings": {**first.settings, "takes": len(entries)}})


def estimates_for(manifest: Manifest, artifacts: list[ArtifactRecord], bundle: Path) -> dict:
    """Roofline estimates for artifacts this host cannot run (labelled ``estimated``)."""
    from edgekit.profiling.estimate import estimate_for_bundle

    final = manifest.final_model
    if final.path:  # the estimates load it: inside the bundle and unchanged, or not at all
        verified_file(bundle, final.path, final.sha256, "the final model")
    out = {}
    for art in artifacts:
        try:
            out[art.name] = estimate_for_bundle(manifest, bundle, art)
        except EdgekitError as err:
            out[art.name] = {"error": str(err)}
    return out


def failed_artifacts(entry: BenchEntry) -> EdgekitError | None:
    """The error ``edgekit bench`` exits with when any artifact failed to run (None when all ran), naming
    each one: a bench whose artifacts all failed must not look like a success to CI."""
    failed = {name: r["error"] for name, r in entry.results.items() if r.get("error")}
    if not failed:
        return None
    listed = "; ".join(f"{name}: {why}" for name, why in failed.items())
    return EdgekitError(f"{len(failed)} of {len(entry.results)} artifacts failed to run: {listed}")


def merge_into_bundle(bundle: Path, entry: BenchEntry) -> Manifest:
    """Adds/replaces the bench entry for this (machine, data) in manifest.json, re-runs the decisions
    (a device's measurements replace estimates in precision selection, gates and deploy) and rewrites
    the reports."""
    from edgekit.reports.render import write_reports
    from edgekit.verdicts import decide

    manifest = read_manifest(bundle)
    manifest.benchmarks = [b for b in manifest.benchmarks if b.key != entry.key] + [entry]
    decide(manifest)
    write_manifest(bundle, manifest)
    write_reports(bundle, manifest)
    return manifest
