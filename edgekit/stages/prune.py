"""``prune``: structured channel pruning (torch-pruning dependency graph), or unstructured / 2:4 sparsity.

Structured pruning makes a smaller dense model (real speed-ups on every runtime); the recipe then
recovers accuracy with ``finetune`` or ``distill`` (teacher = the unpruned input model). The metrics
carry per-layer channels before/after, params, MACs and ONNX Runtime latency before/after measured
side by side. The pruned model is stored in edgekit's checkpoint format (architecture + resized
state dict, loads with ``weights_only=True``).
"""

from __future__ import annotations

import copy
import itertools
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekit import ui
from edgekit.data.core import make_loader
from edgekit.errors import first_line
from edgekit.models.complexity import count_macs, count_params
from edgekit.models.reparam import NOTE as REPARAM_NOTE, reparameterize
from edgekit.pruning.layers import channel_changes, channel_table, protected_layers, widest_layer
from edgekit.pruning.measure import ort_latency, ort_latency_interleaved
from edgekit.pruning.sparsity import semi_structured_2_4, unstructured_magnitude
from edgekit.pruning.structured import StructuredPlan, structured_prune
from edgekit.runtime.identity import host_cpu_flags
from edgekit.stages.base import Stage, StageContext, StageResult, register_stage


class PruneParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["structured", "unstructured", "2:4"] = "structured"
    ratio: float | None = Field(None, gt=0, lt=1, description="structured: fraction of channels to remove; "
                                "unstructured: fraction of weights to zero")
    macs: float | None = Field(None, gt=0, lt=1, description="structured: keep at most this fraction of MACs")
    latency_ms: float | None = Field(None, gt=0, description="structured: prune until ONNX Runtime latency "
                                     "(batch, threads below) is at most this")
    scope: Literal["uniform", "global"] = "uniform"
    importance: Literal["l1", "l2", "taylor"] = "l2"
    ignore: list[str] = Field(default_factory=list, description="module paths whose output channels are kept")
    attention: Literal["head_dims", "heads"] = Field("head_dims", description="attention: shrink every head "
                                                     "(head dims) or remove whole heads")
    steps: int = Field(20, ge=1, le=200, description="pruning steps towards a macs/latency target")
    max_layer_ratio: float = Field(0.9, gt=0, lt=1)
    round_to: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        None, description="keep channel counts multiples of this; auto: the target's channel_multiple on this host")
    max_seconds: float | None = Field(None, gt=0, description="structured: time bound; past it the model pruned "
                                      "so far is kept (default: scaled to the model's MACs and parameters)")
    taylor_batches: int = Field(4, ge=1)
    measure_latency: bool = Field(True, description="time ONNX Runtime before/after (adds a few seconds)")
    latency_batch: int = Field(1, ge=1)
    latency_threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> "PruneParams":
        targets = [n for n in ("ratio", "macs", "latency_ms") if getattr(self, n) is not None]
        if self.mode == "structured" and len(targets) != 1:
            raise ValueError("structured pruning needs exactly one of ratio, macs, latency_ms "
                             f"(got {', '.join(targets) or 'none'})")
        if self.mode == "unstructured" and targets != ["ratio"]:
            raise ValueError("unstructured pruning takes only ratio (the fraction of weights to zero)")
        if self.mode == "2:4" and targets:
            raise ValueError("2:4 sparsity takes no ratio/macs/latency_ms (it is always 50% of weights)")
        return self


@register_stage("prune")
class Prune(Stage):
    Params = PruneParams

    def run(self, ctx: StageContext) -> StageResult:
        p: PruneParams = self.params
        model = ctx.model
        module, spec = model.module, model.spec
        reparameterized = p.mode == "structured" and reparameterize(module)
        if reparameterized:  # fused branches prune as one conv; checkpoints rebuild the fused form
            model.notes[REPARAM_NOTE] = "timm reparameterize_model before pruning"
        before_module = copy.deepcopy(module) if p.measure_latency else None
        channels_before = channel_table(module)
        params_before, macs_before = count_params(module), count_macs(module, spec)
        metrics: dict = {"mode": p.mode, "reparameterized": reparameterized}
        if p.round_to == "auto":  # a caller that did not bind the recipe (Recipe.for_target) to the target
            multiple, _ = ctx.target.channel_multiple_here(host_cpu_flags(), widest_layer(module))
            p = p.model_copy(update={"round_to": multiple})
        if p.mode == "structured":
            target = next(n for n in ("ratio", "macs", "latency_ms") if getattr(p, n) is not None)
            plan = StructuredPlan(target=target, value=getattr(p, target), importance=p.importance, scope=p.scope,
                                  steps=p.steps, max_layer_ratio=p.max_layer_ratio, round_to=p.round_to,
                                  ignore=p.ignore, attention=p.attention, max_seconds=p.max_seconds)
            metrics.update(structured_prune(module, spec, plan, self._grad_batches(ctx), self._latency_fn(spec)))
            metrics["speedup_note"] = "structured: a smaller dense model, faster on every runtime"
        else:
            protected = set(protected_layers(module, p.ignore))
            metrics.update(unstructured_magnitude(module, p.ratio, protected, p.scope) if p.mode == "unstructured"
                           else semi_structured_2_4(module, protected))
        module.eval()
        metrics.update({"params_before": params_before, "params_after": count_params(module),
                        "macs_before": macs_before, "macs_after": count_macs(module, spec)})
        metrics["channels"] = [r for r in channel_changes(channels_before, channel_table(module))]
        if p.measure_latency:
            metrics["ort_latency"] = _latency_before_after(before_module, module, spec, p)
        model.notes["pruned"] = (f"{p.mode} pruning: {metrics['macs_after'] / macs_before:.1%} of MACs, "
                                 f"{metrics['params_after'] / params_before:.1%} of params")
        return StageResult(model, metrics)

    def _grad_batches(self, ctx: StageContext):
        if self.params.importance != "taylor":
            return None
        spec, n = ctx.model.spec, self.params.taylor_batches

        def batches():
            loader = make_loader(ctx.data.train, 64, shuffle=True, seed=ctx.seed)
            for images, labels in itertools.islice(loader, n):
                yield spec.prepare(images), labels

        return batches

    def _latency_fn(self, spec):
        if self.params.latency_ms is None:
            return None
        p = self.params
        return lambda module: ort_latency(module, spec, batch=p.latency_batch, threads=p.latency_threads)["p50_ms"]


def _latency_before_after(before, after, spec, p: PruneParams) -> dict:
    """ONNX Runtime latency of the model before and after, side by side; a model ONNX Runtime cannot run
    is the compile step's to report (per backend): here the stage records why and goes on."""
    try:
        lat = ort_latency_interleaved({"before": (before, spec), "after": (after, spec)},
                                      batch=p.latency_batch, threads=p.latency_threads, rounds=10)
    except Exception as err:  # noqa: BLE001 - export/runtime failures are model-specific
        ui.warn(f"prune: ONNX Runtime latency not measured ({first_line(err, typed=True)})")
        return {"error": first_line(err, typed=True)}
    return {"before": lat["before"], "after": lat["after"],
            "speedup_p50": round(lat["before"]["p50_ms"] / lat["after"]["p50_ms"], 3)}
