"""The Python API: what ``import edgekit`` offers, and what every CLI command calls.

    import edgekit
    result = edgekit.compress("builtin:resnet8", "digits", target="x86-cpu")
    session = result.deployed.load()
    logits = session.predict(images)       # model-ready float32 N x C x H x W

``model`` is a source string or an ``nn.Module`` built in Python; ``data`` a source string, a folder path, a
torch ``Dataset`` or a ``(train, val[, test])`` tuple of them. Errors a caller can fix are ``EdgekitError``
(one line: the problem and what to do).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from edgekit.errors import EdgekitError
from edgekit.gates import Gates
from edgekit.vocab import Basis

if TYPE_CHECKING:
    import torch.nn as nn
    from torch.utils.data import Dataset

    from edgekit.manifest import ArtifactRecord, BenchEntry, Manifest
    from edgekit.quant_debug.bundle import DebugReport
    from edgekit.recipe import Recipe
    from edgekit.runtime import Session
    from edgekit.spec import ModelSpec
    from edgekit.target import Target


@dataclass(frozen=True)
class Artifact:
    """One file of a bundle as a user reads it: what it is, how accurate and fast it measured, and ``load()``."""

    name: str
    runtime: str
    precision: str                 # what was asked for: fp32, fp16, int8
    executed: str | None           # what the runtime ran (an int8 request can run partly in float)
    path: Path                     # the main file (absolute)
    bytes: int
    top1: float | None             # % on the test split, through this file's runtime
    drop: float | None             # points lost against the input model (PyTorch)
    drop_vs_final: float | None    # points lost against the final PyTorch model (what conversion cost)
    p50_ms: float | None           # batch-1 median latency on the target
    latency_basis: Basis           # how p50_ms was obtained: measured here / on the device (where) / estimated
    deployed: bool
    bundle: Path
    record: ArtifactRecord         # the manifest's full entry

    def load(self, threads: int | None = None) -> Session:
        """A runtime session on this file (``predict(images) -> logits``); close it, or use ``with``."""
        from edgekit.runtime import MissingRuntime, RuntimeLayerError, open_session

        if not self.record.runnable_here:
            raise EdgekitError(f"artifact {self.name} cannot run on this machine ({self.runtime})",
                               "load it on the device it was built for")
        try:
            return open_session(self.record.model_dump(mode="json"), self.bundle, threads or 1)
        except (MissingRuntime, RuntimeLayerError) as err:
            raise EdgekitError(err.problem, err.hint) from None

    def __repr__(self) -> str:
        p50 = f"{self.p50_ms:.3f} ms ({self.latency_basis})" if self.p50_ms is not None else self.latency_basis
        top1 = f"{self.top1:.2f}%" if self.top1 is not None else "—"
        return f"Artifact({self.name}, top-1 {top1}, p50 {p50}{', deployed' if self.deployed else ''})"


@dataclass(frozen=True)
class Result:
    """A bundle: its typed manifest, where it lies, its artifacts and the one chosen for deploy."""

    manifest: Manifest
    bundle: Path

    @property
    def artifacts(self) -> list[Artifact]:
        return [self._artifact(a) for a in self.manifest.artifacts]

    @property
    def deployed(self) -> Artifact | None:
        """The artifact the decisions chose (None when none met the recipe's bounds)."""
        d = self.manifest.deploy
        return self._artifact(self.manifest.artifact(d.artifact)) if d is not None else None

    @property
    def spec(self) -> ModelSpec:
        """The final model's input spec: ``spec.prepare(raw uint8 images)`` gives what ``predict`` takes."""
        return self.manifest.final_model.spec

    @property
    def gates_passed(self) -> bool:
        from edgekit.gates import gate_failure

        return gate_failure(self.manifest) is None

    def _artifact(self, record: ArtifactRecord) -> Artifact:
        from edgekit.decisions import latency_for

        p50, basis = latency_for(record, self.manifest.target, self.manifest.benchmarks)
        deploy = self.manifest.deploy
        return Artifact(name=record.name, runtime=record.runtime, precision=record.precision,
                        executed=record.meta.get("executed_precision"), path=(self.bundle / record.path).resolve(),
                        bytes=record.bytes, top1=record.top1, drop=record.drops.vs_input,
                        drop_vs_final=record.drops.vs_final, p50_ms=p50, latency_basis=basis,
                        deployed=deploy is not None and deploy.artifact == record.name, bundle=self.bundle,
                        record=record)

    def __repr__(self) -> str:
        return f"Result({self.bundle}, deployed={self.deployed!r})"


def compress(model: str | nn.Module | None = None,
             data: str | Path | Dataset | Sequence[Dataset] | None = None,
             target: str | Path = "x86-cpu",
             recipe: str | Path | Recipe | None = None,
             out: str | Path | None = None,
             *,
             spec: ModelSpec | None = None,
             force: bool = False,
             arch: str | None = None,
             input_size: int | tuple[int, int] | None = None,
             trust_pickle: bool = False,
             use_cache: bool = True,
             resume: bool = True,
             threads: int | None = None,
             device: str = "auto",
             skip_broken_images: bool = False,
             latency_budget_ms: float | None = None,
             budget_students: Sequence[str] = (),
             max_accuracy_drop: float | None = None,
             max_latency_ms: float | None = None,
             server_target: str = "x86-cpu",
             host: str | None = None,
             port: int = 22,
             identity: str | Path | None = None,
             known_hosts: str | Path | None = None,
             remote_python: str = "python3",
             compile_overrides: dict[str, Any] | None = None,
             command: Sequence[str] | None = None) -> Result:
    """Compress ``model`` for ``target`` with ``recipe`` (default: the target's own), measure every file built,
    and write a bundle to ``out`` (default ``edgekit-runs/<recipe>-<target>-<time>``).

    Neither model nor data: the offline demo (a digits teacher). ``spec`` tells how a Python module's input
    is prepared (default: the data's images as given, scaled to [0, 1] when uint8). ``host``: time and bench on
    a device over SSH. ``max_accuracy_drop``/``max_latency_ms``: CI gates, judged on the deployed artifact
    (``Result.gates_passed``; the CLI exits 3 when they fail). ``command``: what to record as the call in the
    manifest (default: this process's ``sys.argv``)."""
    from edgekit.pipeline import CompressOptions
    from edgekit.pipeline import compress as run

    if threads is not None and threads < 1:
        raise EdgekitError(f"threads={threads} is not a thread count", "give 1 or more, or leave it unset for all cores")
    opts = CompressOptions(
        model=model, data=data, recipe=recipe,
        target=str(target), out=Path(out) if out is not None else None, force=force, arch=arch,
        input_size=_size(input_size), spec=spec, trust_pickle=trust_pickle, use_cache=use_cache, resume=resume,
        threads=threads, overrides=dict(compile_overrides or {}), server_target=server_target,
        gates=Gates(max_accuracy_drop, max_latency_ms), device=device, skip_broken_images=skip_broken_images,
        latency_budget_ms=latency_budget_ms, budget_students=list(budget_students),
        remote=_device(host, port, identity, known_hosts, remote_python),
        command=list(command) if command is not None else _api_call("compress", model, data, target))
    manifest = run(opts)
    if manifest is None:   # a torchrun rank other than 0: it trained; rank 0 writes the bundle
        return None  # type: ignore[return-value]
    return Result(manifest, Path(manifest.bundle))


def load_bundle(path: str | Path) -> Result:
    """A bundle written by ``compress`` (or the CLI), read back with its typed manifest."""
    from edgekit.manifest import read_manifest

    bundle = Path(path)
    manifest = read_manifest(bundle)
    return Result(manifest, bundle)


def bench(bundle: str | Path | Result, host: str | None = None, *, port: int = 22,
          identity: str | Path | None = None, known_hosts: str | Path | None = None,
          remote_python: str = "python3", timeout: float = 900.0, data: str | None = None,
          limit: int | None = None, artifacts: Sequence[str] = (), warmup: int = 10, runs: int = 100,
          max_seconds: float = 5.0, batch: int = 1, batch_sizes: Sequence[int] = (),
          threads: int | None = None, update: bool = True) -> BenchEntry:
    """Measure every artifact of ``bundle`` through its runtime, here or on ``host`` over SSH (latency
    percentiles, throughput, memory, accuracy); with ``update`` the results go into the bundle's manifest and
    reports, where the decisions read them."""
    from edgekit.profiling.bench import BenchSettings, bench_bundle

    if runs < 1 or warmup < 0 or batch < 1 or (limit is not None and limit < 1):
        raise EdgekitError("runs, batch and limit must be >= 1 and warmup >= 0")
    if threads is not None and threads < 1:
        raise EdgekitError(f"threads={threads} is not a thread count", "give 1 or more, or leave it unset")
    if any(b < 1 for b in batch_sizes):
        raise EdgekitError(f"batch sizes {list(batch_sizes)} must be >= 1")
    path = bundle.bundle if isinstance(bundle, Result) else Path(bundle)
    settings = BenchSettings(warmup=warmup, runs=runs, max_seconds=max_seconds, batch=batch,
                             batch_sizes=list(batch_sizes), threads=threads, data=data, limit=limit,
                             artifacts=list(artifacts))
    remote = _device(host, port, identity, known_hosts, remote_python, timeout)
    return bench_bundle(path, settings, remote=remote, update_bundle=update)


def inspect(model: str, *, arch: str | None = None, input_size: int | tuple[int, int] | None = None,
            num_classes: int | None = None, trust_pickle: bool = False) -> dict[str, Any]:
    """A model's parameters, MACs (torch.utils.flop_counter), input spec and per-layer table, as plain data."""
    from edgekit.models import load_model
    from edgekit.models.complexity import count_macs, count_params, layer_table

    loaded = load_model(model, num_classes=num_classes, arch=arch, input_size=_size(input_size),
                        trust_pickle=trust_pickle)
    return {"source": loaded.source, "arch": loaded.arch, "sha256": loaded.sha256,
            "spec": loaded.spec.model_dump(mode="json"), "params": count_params(loaded.module),
            "macs": count_macs(loaded.module, loaded.spec), "notes": loaded.notes,
            "layers": layer_table(loaded.module, loaded.spec)}


def debug(bundle: str | Path | Result, artifact: str | None = None, *, images: int = 32,
          threads: int | None = None) -> DebugReport:
    """Where an INT8 artifact of ``bundle`` (default: the deployed one when INT8, else the first) departs from its
    FP32 sibling, layer by layer, through its own runtime, on ``images`` of the bundle's calibration images: SQNR
    and cosine per layer (named by the model's module paths), the first divergence, the worst layers. Writes
    ``debug/<artifact>.json`` and ``.png`` into the bundle and touches nothing else there."""
    if threads is not None and threads < 1:
        raise EdgekitError(f"threads={threads} is not a thread count", "give 1 or more, or leave it unset")
    result = bundle if isinstance(bundle, Result) else load_bundle(bundle)
    from edgekit.quant_debug.bundle import debug_artifact

    return debug_artifact(Path(result.bundle), result.manifest, artifact, images, threads or 1)


def targets() -> list[Target]:
    """The shipped device targets (``targets/*.yaml``), each with its runtime, precisions and recipe."""
    from edgekit.target import list_targets

    return list_targets()


def recipes() -> list[str]:
    """Names of the shipped recipes (``recipes/*.yaml``); ``compress(recipe=name)`` takes any of them."""
    from edgekit.recipe import recipe_files

    return list(recipe_files())


def _size(value: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    size = (value, value) if isinstance(value, int) else tuple(value)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise EdgekitError(f"input_size {value!r} is not a size", "give H or (H, W) in pixels, e.g. 224")
    return size  # type: ignore[return-value]


def _device(host: str | None, port: int, identity, known_hosts, python: str, timeout: float = 900.0):
    """The ``SshDevice`` for ``host`` (None without one); bad values are one-line errors here."""
    if not host:
        return None
    from edgekit.profiling.remote import SshDevice

    return SshDevice.parse(host, port=port, identity=Path(identity) if identity else None,
                           known_hosts=Path(known_hosts) if known_hosts else None, python=python, timeout=timeout)


def _api_call(name: str, model: Any, data: Any, target: Any) -> list[str]:
    """The manifest's ``command`` for a Python call: what was called, with objects named by their type."""
    def show(value: Any) -> str:
        return repr(str(value)) if isinstance(value, (str, Path)) else type(value).__name__
    return [sys.argv[0] if sys.argv and sys.argv[0] else "python",
            f"edgekit.{name}(model={show(model)}, data={show(data)}, target={show(target)})"]
