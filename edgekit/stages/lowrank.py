"""``lowrank``: replace Conv2d/Linear layers by low-rank factorizations (SVD, spatial SVD, Tucker-2).

Ranks come from one of: ``rank_ratio`` (fraction of each layer's full rank), ``energy`` (fewest
singular values keeping that fraction of the squared spectrum), or ``macs`` (one global rank ratio,
found by bisection, so the model has at most that fraction of its MACs). Layers whose factorized
MACs would not be lower are left alone and reported. Recover accuracy with a following
``distill: {student: self}`` (KD from the unfactorized input model).

The metrics carry per-layer rank, MACs and params before/after and ONNX Runtime latency
before/after measured interleaved (as for ``prune``). The factorized model is an ordinary module;
its ``arch`` records the factorization so the edgekit checkpoint rebuilds it
(``edgekit.models.factorized``).
"""

from __future__ import annotations

import copy
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekit import ui
from edgekit.errors import EdgekitError
from edgekit.models.factorized import factorized_arch
from edgekit.models.complexity import count_macs, count_params
from edgekit.pruning.lowrank import candidates, choose_ratio_for_macs, factorize_model
from edgekit.pruning.measure import ort_latency_interleaved
from edgekit.stages.base import Stage, StageContext, StageResult, register_stage


class LowRankParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["svd", "spatial_svd", "tucker"] = "svd"
    rank_ratio: float | None = Field(None, gt=0, le=1, description="keep this fraction of each layer's full rank")
    energy: float | None = Field(None, gt=0, le=1, description="keep the fewest singular values holding this "
                                 "fraction of the squared spectrum")
    macs: float | None = Field(None, gt=0, lt=1, description="at most this fraction of the model's MACs "
                               "(one global rank ratio, by bisection)")
    ignore: list[str] = Field(default_factory=list, description="module paths (or prefixes) left as they are")
    round_to: int | None = Field(None, ge=1, description="round ranks up to a multiple of this (e.g. 8: "
                                 "channel counts the runtimes' vector kernels like)")
    measure_latency: bool = Field(True, description="time ONNX Runtime before/after (adds a few seconds)")
    latency_batch: int = Field(1, ge=1)
    latency_threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> "LowRankParams":
        targets = [n for n in ("rank_ratio", "energy", "macs") if getattr(self, n) is not None]
        if len(targets) != 1:
            raise ValueError(f"lowrank needs exactly one of rank_ratio, energy, macs (got {', '.join(targets) or 'none'})")
        return self


@register_stage("lowrank")
class LowRank(Stage):
    Params = LowRankParams

    def run(self, ctx: StageContext) -> StageResult:
        p: LowRankParams = self.params
        model = ctx.model
        module, spec = model.module, model.spec
        if model.arch is None:
            raise EdgekitError(f"lowrank: the model from {model.source} cannot be rebuilt from source, so a "
                               "factorized checkpoint could not be saved", "load it as a builtin/torchvision/timm "
                               "architecture or an edgekit checkpoint")
        before_module = copy.deepcopy(module) if p.measure_latency else None
        params_before, macs_before = count_params(module), count_macs(module, spec)
        cands = candidates(module, spec, p.method, p.ignore)
        metrics: dict = {"method": p.method}
        ratio, energy = p.rank_ratio, p.energy
        if p.macs is not None:
            ratio, reached = choose_ratio_for_macs(cands, macs_before, p.macs, round_to=p.round_to)
            metrics.update(rank_ratio_chosen=round(ratio, 6), macs_target=p.macs, macs_target_reached=reached)
            if not reached:
                ui.warn(f"lowrank: {p.macs:.0%} of MACs is out of reach even at rank 1 (layers left alone: "
                        f"{', '.join(c.path for c in cands if c.skip) or 'none'}); using the smallest ranks")
        entries, rows = factorize_model(module, cands, rank_ratio=ratio, energy=energy, round_to=p.round_to)
        module.eval()
        if entries:
            model.arch = factorized_arch(model.arch, entries)
        metrics.update({"layers": rows, "factorized": len(entries),
                        "left_alone": [f"{r['layer']}: {r['status']}" for r in rows if r["status"] != "factorized"],
                        "params_before": params_before, "params_after": count_params(module),
                        "macs_before": macs_before, "macs_after": count_macs(module, spec)})
        if p.measure_latency:
            lat = ort_latency_interleaved({"before": (before_module, spec), "after": (module, spec)},
                                          batch=p.latency_batch, threads=p.latency_threads, rounds=10)
            metrics["ort_latency"] = {"before": lat["before"], "after": lat["after"],
                                      "speedup_p50": round(lat["before"]["p50_ms"] / lat["after"]["p50_ms"], 3)}
        model.notes["lowrank"] = (f"{p.method} factorization of {len(entries)} layers: "
                                  f"{metrics['macs_after'] / macs_before:.1%} of MACs, "
                                  f"{metrics['params_after'] / params_before:.1%} of params")
        return StageResult(model, metrics)
