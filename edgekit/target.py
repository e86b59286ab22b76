"""Device profiles (``targets/*.yaml``): which runtime compiles and runs the model, which
precisions are allowed, and the published device figures used by estimators."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit.errors import EdgekitError, first_line, validation_summary
from edgekit.resources import shipped_dir
from edgekit.vocab import Precision


class InputConstraints(BaseModel):
    batch: list[int] = [1]
    layout: Literal["NCHW", "NHWC"] = "NCHW"


class BackendFigures(BaseModel):
    """Estimator figures of one backend whose kernels reach the device's peak differently from the target's
    runtime (e.g. ExecuTorch next to LiteRT on a Pi), from that backend's own published latencies: the same
    keys as ``DeviceFigures``, laid over them (missing keys fall back to the device's)."""

    model_config = ConfigDict(extra="forbid")
    published_ms: dict[str, float] = Field(default_factory=dict)
    runtime_efficiency: dict[str, float] = Field(default_factory=dict)
    layer_overhead_us: float | None = None
    precision_efficiency: dict[str, dict[str, float]] = Field(default_factory=dict)
    calibrated_on: str | None = None


class DeviceFigures(BaseModel):
    model_config = ConfigDict(extra="allow")
    cpu: str | None = None
    gpu: str | None = None
    memory_gb: float | None = None
    peak_gops: dict[str, float] = Field(default_factory=dict)
    memory_bandwidth_gbps: float | None = None
    published_ms: dict[str, float] = Field(default_factory=dict)
    # Latency estimator (edgekit/profiling/estimate.py): fraction of peak the runtime reaches on dense
    # convs / depthwise convs / linear layers, per-op overhead, and where those numbers came from;
    # ``epilogue_ns`` / ``lookup_ns`` / ``elementwise_ns`` keys are ns per element of unfused element-wise
    # ops (0 if absent; a missing ``lookup_ns`` falls back to ``elementwise_ns``).
    runtime_efficiency: dict[str, float] = Field(default_factory=dict)
    layer_overhead_us: float | None = None
    # Per precision (int8, fp16): its own efficiency factors, ``overhead_us`` and per-element costs, where a runtime's
    # INT8 kernels scale differently from its FP32 ones per layer type (fitted on host pairs; on a device
    # solved from its published INT8/FP pair). Missing keys fall back to runtime_efficiency.
    precision_efficiency: dict[str, dict[str, float]] = Field(default_factory=dict)
    calibrated_on: str | None = None
    # Per backend (``executorch``): its own figures where its published numbers differ from the runtime's.
    backends: dict[str, BackendFigures] = Field(default_factory=dict)

    def for_backend(self, backend: str | None) -> "DeviceFigures":
        """These figures with ``backend``'s own laid over them (itself when the backend has none)."""
        own = self.backends.get(backend or "")
        if own is None:
            return self
        precision = {p: {**self.precision_efficiency.get(p, {}), **own.precision_efficiency.get(p, {})}
                     for p in {*self.precision_efficiency, *own.precision_efficiency}}
        return self.model_copy(update={
            "published_ms": own.published_ms, "precision_efficiency": precision,
            "runtime_efficiency": {**self.runtime_efficiency, **own.runtime_efficiency},
            "layer_overhead_us": own.layer_overhead_us if own.layer_overhead_us is not None else self.layer_overhead_us,
            "calibrated_on": own.calibrated_on or self.calibrated_on, "backends": {}})


class Target(BaseModel):
    name: str
    description: str = ""
    runtime: str = Field(description="the runtime the device runs (its preferred backend)")
    backends: list[str] = Field(description="backends to compile for, preferred first")
    precisions: list[Precision]
    default_precision: Precision = Precision.FP32
    recipe: str = Field("quickstart", description="the recipe `edgekit compress` runs when --recipe is not given")
    threads: int = Field(1, ge=1)
    reach: Literal["local", "ssh"] = "local"
    input: InputConstraints = InputConstraints()
    device: DeviceFigures = DeviceFigures()
    # The channel multiple a recipe's ``round_to: auto`` prunes to: keys are CPU feature flags (as in
    # /proc/cpuinfo), the first one this host has wins, else ``default``. Host flags count only for a local
    # target (the host is the device); a device reached over SSH gets ``default``.
    channel_multiple: dict[str, int] = Field(default_factory=dict)
    source_file: str | None = None

    def channel_multiple_here(self, host_flags: frozenset[str], widest: int | None = None) -> tuple[int | None, str]:
        """The channel multiple for this target as run from a host with CPU ``host_flags``
        (``runtime.identity.host_cpu_flags``), and why (for the log). A multiple as wide as the model's
        ``widest`` layer could prune nothing, so the next one listed applies (the digits demo's 64-channel CNN
        on an AMX host prunes in multiples of 16)."""
        flags = host_flags if self.reach == "local" else frozenset()
        too_wide = []
        for feature, multiple in self.channel_multiple.items():
            if feature != "default" and feature not in flags:
                continue
            why = f"{feature} on this CPU" if feature != "default" else "default"
            if widest is not None and multiple >= widest:
                too_wide.append(f"×{multiple} for {why} would leave the {widest}-channel layers whole")
                continue
            return multiple, "; ".join([f"target {self.name} channel_multiple: {why}", *too_wide])
        return None, "; ".join([f"target {self.name} sets no channel multiple that fits", *too_wide])


def target_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(shipped_dir("targets").glob("*.yaml"))}


def load_target(name_or_path: str) -> Target:
    """A shipped target by name, or a user's YAML file by path."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        files = target_files()
        if name_or_path not in files:
            raise EdgekitError(f"unknown target '{name_or_path}'",
                               f"known targets: {', '.join(files)} (or a path to a target YAML)")
        path = files[name_or_path]
    hint = "see targets/x86-cpu.yaml for the format"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise EdgekitError(f"target file {path} is not YAML: {first_line(err)}", hint) from None
    if not isinstance(data, dict):
        raise EdgekitError(f"target file {path} holds no fields ({type(data).__name__})", hint)
    try:
        return Target(**{**data, "source_file": str(path)})
    except ValidationError as err:
        raise EdgekitError(f"target file {path} is invalid: {validation_summary(err)}", hint) from None


def list_targets() -> list[Target]:
    return [load_target(name) for name in target_files()]
