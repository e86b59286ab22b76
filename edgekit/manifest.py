"""The bundle's ``manifest.json`` as typed models, written and read only through this module.

Everything that reads a bundle (gates, reports, ``edgekit bench``, the split commands,
``build-engine``) gets a ``Manifest`` from ``read_manifest`` and reads fields, so a renamed or
missing field is an error here, once, not a ``KeyError`` somewhere downstream. ``schema_version``
says which layout a file has; an older or invalid file is a one-line error naming the bundle.

Free-form parts stay dicts on purpose: stage params/metrics (each stage's own), runtime session
info, a device's bench results (written by the self-contained runner). Sections a run does not
produce are ``None`` and are left out of the JSON (the layout before schema 2 did the same).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgekit.backends.base import Artifact
from edgekit.decision_records import Candidate, Decision, Deploy, NotScored, Skipped  # noqa: F401 - sections, re-exported
from edgekit.errors import EdgekitError
from edgekit.recipe import Recipe
from edgekit.spec import ModelSpec
from edgekit.target import Target
from edgekit.vocab import Basis, Precision

SCHEMA_VERSION = 2
FILE = "manifest.json"


class Record(BaseModel):
    """A manifest section: known fields typed, extra keys kept (runtimes and stages add their own)."""

    model_config = ConfigDict(extra="allow")


# --- what was measured ----------------------------------------------------------------------------

class Accuracy(Record):
    top1: float | None = None
    top5: float | None = None
    samples: int | None = None
    measured: str | None = None        # set when not through the artifact's own runtime (TensorRT proxy)
    reference_top1: float | None = None  # the input artifact: the PyTorch input model's on the same images


class Agreement(Record):
    top1_agreement: float | None = None
    max_abs_logit_diff: float | None = None


class Latency(Record):
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    threads: int | None = None
    measured: str | None = None        # host | estimated


class Estimate(Record):
    kind: str = "estimated"
    target: str | None = None
    precision: Precision | None = None
    latency_ms: float | None = None
    compute_bound_fraction: float | None = None
    model: str | None = None
    error: str | None = None


class Drops(Record):
    """Top-1 drop in percentage points: against the input model (what compression cost: gates, deploy)
    and against the final FP32 PyTorch model (what compiling/quantizing cost: precision selection)."""

    vs_input: float | None = None
    vs_final: float | None = None


class ArtifactMetrics(Record):
    accuracy: Accuracy | None = None          # a split head's: of head -> uint8 -> tail
    split_accuracy: Accuracy | None = None    # a split head's accuracy again, under the name readers know
    agreement: Agreement | None = None
    latency: Latency | None = None
    estimate: Estimate | None = None
    drops: Drops | None = None
    session: dict[str, Any] | None = None
    not_scored: NotScored | str | None = None  # why it has no accuracy (recipe profile.score: needed); str: older


class ArtifactRecord(Artifact):
    """An ``Artifact`` with typed metrics; backends load it like any artifact."""

    metrics: ArtifactMetrics = Field(default_factory=ArtifactMetrics)  # type: ignore[assignment]

    @property
    def top1(self) -> float | None:
        return self.metrics.accuracy.top1 if self.metrics.accuracy else None

    @property
    def drops(self) -> "Drops":
        return self.metrics.drops or Drops()


# --- inputs and stages -----------------------------------------------------------------------------

class ModelRecord(Record):
    source: str
    sha256: str | None = None
    arch: str | None = None
    spec: ModelSpec
    params: int
    macs: int
    notes: dict[str, Any] = Field(default_factory=dict)
    requested: str | None = None


class SkippedImages(Record):
    """Unreadable files left out under ``--skip-broken-images``: file -> why it could not be read."""
    count: int
    files: dict[str, str]


class DataRecord(Record):
    source: str
    train: int
    val: int
    test: int
    num_classes: int
    channels: int | None = None
    image_size: list[int] | None = None
    fingerprint: str | None = None
    skipped_images: SkippedImages | None = None


class StageRecord(Record):
    name: str

    @model_validator(mode="before")
    @classmethod
    def _schema_1_val_top1(cls, data: Any) -> Any:
        """Bundles written before stage records named their split have ``val_top1`` (always val)."""
        if isinstance(data, dict) and "val_top1" in data and "top1" not in data:
            data = {**data, "top1": data["val_top1"]}
            data.pop("val_top1")
        return data

    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    top1: float | None = None          # of the model after the stage, on ``split``
    split: str = "val"                 # val, or test for an ``evaluate: {split: test}`` stage
    samples: int | None = None         # images ``top1`` was read on (None: bundles written before it was recorded)
    seconds: float | None = None
    cached: bool = False
    cache_key: str | None = None


class Reference(Record):
    """PyTorch accuracy of a model on the test split: the input model (before any stage) or the final one."""

    accuracy: Accuracy
    params: int
    macs: int
    val_top1: float | None = None      # older bundles: the input model's on val (near-chance check)


class References(Record):
    """``input``: the model the user gave, measured before any stage (None in bundles written before
    it was measured); ``final``: the model after the stages, what the artifacts are compiled from."""

    input: Reference | None = None
    final: Reference


class FinalModel(Record):
    path: str | None = None            # artifacts/model.pt, None when the model cannot be rebuilt
    sha256: str | None = None
    spec: ModelSpec


# --- decisions (precision selection, deploy, what was skipped: edgekit.decision_records) ------------

class Calibration(Record):
    size: int
    seed: int
    split: str
    balanced: bool = False
    path: str = "calibration.npz"
    sha256: str
    class_counts: dict[int, int] = Field(default_factory=dict)
    parts: dict[str, str] | None = None  # what a split head / tail calibrates on


class GateResult(Record):
    gate: str
    limit: float
    value: float | None = None
    artifact: str | None = None
    passed: bool
    basis: str


class GateReport(Record):
    passed: bool
    deployable: list[str] = Field(default_factory=list)
    results: list[GateResult] = Field(default_factory=list)
    limits: dict[str, float | None] = Field(default_factory=dict)


# --- split models ----------------------------------------------------------------------------------

class Bottleneck(Record):
    shape: list[int]
    bytes_per_image: int
    quantization: dict[str, Any]       # scale, zero_point, dtype, ... (TransferQuant.settings())


class SplitHead(Record):
    artifacts: list[str]
    input: str = ""
    output: str = ""


class SplitTail(Record):
    artifact: str | None               # the one the server runs
    artifacts: list[str] = Field(default_factory=list)
    server_target: str
    input: str = ""
    output: str = ""


class SplitAccuracy(Record):
    split_pair_top1: float | None = None   # head -> uint8 -> tail through the runtimes
    val_top1_teacher: float | None = None  # named as the bottleneck stage's metric
    val_top1_split: float | None = None


class SplitSection(Record):
    split_at: str
    bottleneck: Bottleneck
    feature_shape: list[int]
    head: SplitHead
    tail: SplitTail
    spec: ModelSpec
    stage: dict[str, Any] = Field(default_factory=dict)   # the bottleneck stage's metrics
    accuracy: SplitAccuracy = Field(default_factory=SplitAccuracy)


# --- edgekit bench ---------------------------------------------------------------------------------

class BenchEntry(Record):
    where: str                           # local | ssh://user@host
    created: str = ""
    device: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    results: dict[str, dict[str, Any]] = Field(default_factory=dict)   # the runner's, per artifact
    estimates: dict[str, dict[str, Any]] | None = None

    @property
    def key(self) -> tuple:
        """One entry per (machine, data): a rerun replaces it (an emulated machine is another machine)."""
        return self.where, self.device.get("hostname"), self.data.get("source"), self.emulated

    @property
    def emulated(self) -> str | None:
        """The emulator the device ran under (``qemu-user``), else None: its latency is shown, never decides."""
        return self.device.get("emulated")



# --- latency budget search (edgekit/search/) -------------------------------------------------------

class SearchCandidate(Record):
    """One timed candidate: the input model pruned (untrained) to ``level`` of its MACs, or a student
    architecture of ``budget.students`` (unpruned, untrained), compiled for one (backend, precision), timed
    through that runtime (or estimated: ``basis`` says which)."""

    student: str | None = None           # the student's model source; None: the input model
    random_init: bool = False            # a student without trained weights: chosen only when nothing else fits
    level: float                         # MACs fraction asked of that model (1.0: unpruned)
    round_to: int | None = None          # channel rounding
    macs: int
    params: int
    backend: str
    precision: Precision
    p50_ms: float | None = None          # the slowest of its timings (first + re-timings)
    basis: Basis
    retimed_ms: list[float] = []         # re-timings of a chosen candidate (budget.confirm), in order
    fits: bool = False                   # p50 <= the search's aim (budget x (1 - margin))
    pareto: bool = False                 # no other candidate is both faster and keeps more MACs
    chosen: bool = False
    error: str | None = None

    def model_label(self) -> str:
        """The model timed, whatever runtime timed it: a student, or a level of the input model."""
        if self.student:
            return f"student {self.student}" + (" (random init)" if self.random_init else "")
        return f"{self.level:.0%} of the MACs" + (f", channels ×{self.round_to}" if self.round_to else "")

    def label(self) -> str:
        """How the trace, the log and the errors name this candidate."""
        return f"{self.model_label()}, {self.backend} {self.precision}"


class SearchFinal(Record):
    """The budget re-checked on the deployed (trained) artifact; ``edgekit bench`` updates it."""

    artifact: str | None = None
    p50_ms: float | None = None
    basis: Basis = Basis.not_available()
    met: bool = False
    macs_match: bool | None = None       # the trained model has the chosen candidate's architecture
    takes_ms: list[float] | None = None  # every timing of the deployed file where the first missed (p50 is their median)
    # The host's speed now against during the search: the input model's own artifact (the bundle's baseline file)
    # timed at this check, and the same model on the same runtime and precision in the search's trace, on the
    # same basis. On a shared machine the speed drifts by tens of percent over the minutes of training: a miss
    # by about the slowdown is the host's, not the model's.
    input_search_ms: float | None = None
    input_final_ms: float | None = None

    def host_slowdown(self) -> float | None:
        """input_final_ms / input_search_ms: above 1 when the host ran slower at this check than in the search."""
        if not self.input_search_ms or self.input_final_ms is None:
            return None
        return self.input_final_ms / self.input_search_ms


class SearchSection(Record):
    budget_ms: float
    aim_ms: float
    target: str
    basis: Basis                         # how candidates were timed: measured here / on the device / estimated
    trace: list[SearchCandidate] = Field(default_factory=list)
    chosen: SearchCandidate | None = None
    plan: dict[str, Any] = Field(default_factory=dict)   # the stages and compile settings the search set
    seconds: float | None = None
    untimed: int = 0   # levels pruned but not timed: no more MACs than a candidate already fitting
    notes: list[str] = Field(default_factory=list)
    final: SearchFinal | None = None


# --- the manifest ----------------------------------------------------------------------------------

# --- per-layer INT8 debugging (edgekit.quant_debug) --------------------------------------------------

class DebugLayer(Record):
    index: int | None = None            # position in graph order (debug/<artifact>.json's layers)
    layer: str
    op: str
    sqnr_db: float | None = None
    cosine: float | None = None


class Int8Debug(Record):
    """Where an INT8 artifact departs from its FP32 sibling, layer by layer (``edgekit debug``; compress adds it
    for an INT8 artifact whose drop is over its bound): the first divergence, the worst layers, the files."""

    artifact: str
    reference: str                      # the FP32 artifact compared against
    runtime: str
    images: int
    layers: int
    divergence: DebugLayer | None = None
    divergence_rule: str | None = None  # quant_debug.DivergenceRule
    divergence_before_db: float | None = None   # the layer before it
    worst: list[DebugLayer] = Field(default_factory=list)
    json_path: str | None = None        # in the bundle: debug/<artifact>.json (every layer)
    plot: str | None = None             # debug/<artifact>.png
    error: str | None = None            # why it could not be debugged (compress goes on)


class Manifest(Record):
    schema_version: int = SCHEMA_VERSION
    edgekit_version: str
    created: str
    run_name: str
    command: list[str] = Field(default_factory=list)
    host: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    recipe: Recipe
    target: Target
    model: ModelRecord
    data: DataRecord
    stages: list[StageRecord] = Field(default_factory=list)
    references: References
    final_model: FinalModel
    artifacts: list[ArtifactRecord] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    calibration: Calibration | None = None
    precision_selection: list[Decision] | None = None
    deploy: Deploy | None = None
    no_deploy: list[str] | None = None           # when deploy is None: why, one line per candidate
    split: SplitSection | None = None
    robustness: dict[str, Any] | None = None     # edgekit.profiling.robustness (recipe ``robustness:``)
    int8_debug: list[Int8Debug] | None = None   # INT8 artifacts over their bound, per layer (edgekit.quant_debug)
    gates: GateReport | None = None
    search: SearchSection | None = None
    benchmarks: list[BenchEntry] = Field(default_factory=list)
    seconds: float | None = None
    # wall-clock seconds per phase (load, input_reference, search, stages, final_reference, compile_profile,
    # robustness); the stages' own seconds are in ``stages``, each artifact's in its meta.seconds
    phases: dict[str, float] = Field(default_factory=dict)
    bundle: str | None = Field(None, exclude=True)   # where it was read from / written to; not in the file

    @model_validator(mode="before")
    @classmethod
    def _one_reference(cls, data: Any) -> Any:
        """Bundles written before the input model was measured have one ``reference`` (the final model)."""
        if isinstance(data, dict) and "reference" in data and "references" not in data:
            final = data["reference"]
            data = {k: v for k, v in data.items() if k != "reference"}
            data["references"] = {"final": final}
        return data

    @property
    def reference(self) -> Reference:
        """The final model's reference (what ``reference`` meant before the input model was measured)."""
        return self.references.final

    @property
    def input_reference(self) -> Reference | None:
        return self.references.input

    def artifact(self, name: str) -> ArtifactRecord:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise EdgekitError(f"no artifact named {name} in the bundle",
                           f"artifacts: {', '.join(a.name for a in self.artifacts) or 'none'}")

    def as_json(self) -> dict[str, Any]:
        """The file's layout (what ``--json`` prints, with ``bundle`` added when known)."""
        data = self.model_dump(mode="json", exclude_none=True)
        return {**data, "bundle": self.bundle} if self.bundle else data


def write_manifest(bundle: Path, manifest: Manifest) -> None:
    """Write ``<bundle>/manifest.json`` atomically (a reader never sees half a file)."""
    bundle.mkdir(parents=True, exist_ok=True)
    tmp = bundle / f".{FILE}.tmp-{os.getpid()}"
    data = manifest.model_dump(mode="json", exclude_none=True)
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, bundle / FILE)


def read_manifest(bundle: Path) -> Manifest:
    """The bundle's manifest, or a one-line error: missing, not JSON, older schema, invalid."""
    bundle = Path(bundle)
    path = bundle / FILE
    if not path.is_file():
        raise EdgekitError(f"{bundle} is not an edgekit bundle (no {FILE})", "give the directory compress wrote")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EdgekitError(f"{path} is not valid JSON ({err})", "rebuild the bundle with edgekit compress") from None
    version = data.get("schema_version", 1) if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise EdgekitError(f"{path} has manifest schema {version}; this edgekit reads schema {SCHEMA_VERSION}",
                           "rebuild the bundle with this edgekit's compress")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"])
        raise EdgekitError(f"{path} is invalid: {where}: {e['msg']}", "rebuild the bundle with edgekit compress") from None
    manifest.bundle = str(bundle)
    return manifest

