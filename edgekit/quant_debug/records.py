"""What the debugger finds, as typed values: one ``LayerError`` per user-named layer in graph order, and the
``Divergence`` that says where INT8 first breaks and by which rule. English is written at the edges (the CLI
table, the report section), never here."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum

# A layer is where INT8 breaks when its SQNR is under FLOOR_DB and it lost at least STEP_DB against the layer
# before it: a step, not the slow decline of a deep network, where every layer adds a little error. Why these
# values: a healthy 8-bit tensor measures 30-40 dB and a network loses a few dB per layer on the way down; 20 dB is
# noise at a tenth of the signal's amplitude; a 10 dB step is one layer adding ten times the noise everything
# before it had. Without such a step, the first layer under LOW_DB (noise at a third of the amplitude) is named:
# EfficientNet-Lite0 with its ImageNet weights, ONNX Runtime INT8, declines to 13 dB at its last activation and
# still agrees with FP32 on 40 of 40 photos, so a gradual decline is named only well below that.
FLOOR_DB = 20.0
STEP_DB = 10.0
LOW_DB = 10.0


class DivergenceRule(StrEnum):
    STEP = "step"      # under FLOOR_DB, and STEP_DB or more below the layer before it
    FLOOR = "floor"    # under LOW_DB after a gradual decline (no single step)


@dataclass(frozen=True)
class LayerError:
    """One layer: its module path (``""`` for ops outside any module), the op that produced the compared tensor,
    the tensor compared, its SQNR (median channel, dB), whole-tensor SQNR, cosine, and the INT8 graph's nodes that
    belong to the layer (what a backend's exclusion list takes)."""

    layer: str
    op: str
    tensor: str
    sqnr_db: float
    tensor_sqnr_db: float
    cosine: float
    nodes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.layer or f"({self.op})"


@dataclass(frozen=True)
class Divergence:
    index: int          # position in the layer list (graph order)
    layer: str
    sqnr_db: float
    before_db: float | None   # the layer before it (None: the first layer)
    rule: DivergenceRule


@dataclass(frozen=True)
class LayerReport:
    """Per-layer errors of one INT8 file against its FP32 sibling, in graph order, on ``images`` images."""

    runtime: str
    images: int
    layers: tuple[LayerError, ...]
    divergence: Divergence | None
    floor_db: float = FLOOR_DB
    step_db: float = STEP_DB
    low_db: float = LOW_DB
    meta: dict = field(default_factory=dict)

    def renamed(self, names: dict[str, str]) -> "LayerReport":
        """The same report with layer names translated by ``names`` (others kept): a runtime's spelling of a
        module path turned into the model's own (``edgekit.models.layer_names.litert_paths``)."""
        if not names:
            return self
        layers = tuple(replace(l, layer=names.get(l.layer, l.layer)) for l in self.layers)
        d = self.divergence
        return replace(self, layers=layers,
                       divergence=None if d is None else replace(d, layer=names.get(d.layer, d.layer)))

    def worst(self, n: int = 10) -> list[LayerError]:
        """The ``n`` layers with the lowest SQNR (the sensitivity ranking a mixed-precision search grows from)."""
        scored = [l for l in self.layers if not math.isnan(l.sqnr_db)]
        return sorted(scored, key=lambda l: l.sqnr_db)[:n]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layers"] = [{**asdict(l), "nodes": list(l.nodes)} for l in self.layers]
        return _finite(data)

    @classmethod
    def from_dict(cls, data: dict) -> "LayerReport":
        layers = tuple(LayerError(**{**l, "nodes": tuple(l.get("nodes") or ()),
                                     **{k: _num(l.get(k)) for k in ("sqnr_db", "tensor_sqnr_db", "cosine")}})
                       for l in data["layers"])
        d = data.get("divergence")
        div = Divergence(**{**d, "rule": DivergenceRule(d["rule"])}) if d else None
        return cls(runtime=data["runtime"], images=data["images"], layers=layers, divergence=div,
                   floor_db=data.get("floor_db", FLOOR_DB), step_db=data.get("step_db", STEP_DB),
                   low_db=data.get("low_db", LOW_DB),
                   meta=dict(data.get("meta") or {}))


def first_divergence(layers: list[LayerError] | tuple[LayerError, ...], floor_db: float = FLOOR_DB,
                     step_db: float = STEP_DB, low_db: float = LOW_DB) -> Divergence | None:
    """The first layer (graph order) under ``floor_db`` with a drop of ``step_db`` or more from the layer before
    it; else the first under ``low_db``; None when neither exists."""
    scored = [(i, l) for i, l in enumerate(layers) if not math.isnan(l.sqnr_db)]
    first_low = None
    for k, (i, layer) in enumerate(scored):
        if layer.sqnr_db >= floor_db:
            continue
        before = scored[k - 1][1].sqnr_db if k else None
        if before is None or before - layer.sqnr_db >= step_db:
            return Divergence(i, layer.layer, layer.sqnr_db, before, DivergenceRule.STEP)
        if first_low is None and layer.sqnr_db < low_db:
            first_low = Divergence(i, layer.layer, layer.sqnr_db, before, DivergenceRule.FLOOR)
    return first_low


def _finite(value):
    """JSON has no NaN: unscored values become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _num(value) -> float:
    return math.nan if value is None else float(value)
