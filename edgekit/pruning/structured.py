"""Structured (channel/filter) pruning with torch-pruning's dependency graph.

The dependency graph finds every layer coupled to a channel (residual adds, depthwise convs,
concatenations, BatchNorms, the next layer's inputs) and removes the channel from all of them, so
the pruned network is a smaller *dense* network that every runtime runs faster. Targets:

- ``ratio``: remove this fraction of channels (per layer for ``uniform``, overall for ``global``);
- ``macs``: keep at most this fraction of the MACs (prune in small steps until reached);
- ``latency_ms``: prune in small steps, exporting to ONNX and timing ONNX Runtime after each one,
  until the measured latency is at or under the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgekit import ui
from edgekit.errors import EdgekitError, MissingDependency
from edgekit.models.complexity import count_macs
from edgekit.pruning.layers import protected_layers
from edgekit.spec import ModelSpec


@dataclass
class StructuredPlan:
    target: Literal["ratio", "macs", "latency_ms"]
    value: float
    importance: Literal["l1", "l2", "taylor"] = "l2"
    scope: Literal["uniform", "global"] = "uniform"
    steps: int = 20                      # granularity of macs / latency targets
    max_layer_ratio: float = 0.9         # never remove more than this fraction of one layer
    round_to: int | None = None          # keep channel counts multiples of this (SIMD-friendly)
    ignore: list[str] = field(default_factory=list)


def _torch_pruning():
    try:
        import torch_pruning as tp
    except ImportError:
        raise MissingDependency("torch-pruning", "prune", "structured pruning") from None
    return tp


def _importance(tp, kind: str):
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if kind == "l1" else 2)


def structured_prune(module: nn.Module, spec: ModelSpec, plan: StructuredPlan,
                     grad_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]] | None = None,
                     latency_fn: Callable[[nn.Module], float] | None = None) -> dict:
    """Prune ``module`` in place; returns what happened (steps, MACs trajectory, target met or not).

    ``grad_batches`` yields labelled model-ready batches for Taylor importance; ``latency_fn``
    measures a candidate (median ms) for ``latency_ms`` targets.
    """
    tp = _torch_pruning()
    if plan.importance == "taylor" and grad_batches is None:
        raise EdgekitError("prune: importance 'taylor' needs labelled training data", "use importance l1 or l2")
    if plan.target == "latency_ms" and latency_fn is None:
        raise EdgekitError("prune: a latency_ms target needs a latency measurement")
    module.eval()
    ignored = list(protected_layers(module, plan.ignore).values())
    example = torch.randn(1, *spec.input_shape)
    base_macs = count_macs(module, spec)
    if plan.target == "ratio":
        final_ratio, steps = plan.value, 1
    else:
        final_ratio, steps = plan.max_layer_ratio, plan.steps
    try:
        pruner = tp.pruner.BasePruner(
            module, example, importance=_importance(tp, plan.importance), global_pruning=plan.scope == "global",
            pruning_ratio=final_ratio, max_pruning_ratio=plan.max_layer_ratio, iterative_steps=steps,
            ignored_layers=ignored, round_to=plan.round_to)
    except Exception as err:  # noqa: BLE001 - graph tracing failures are model-specific
        raise EdgekitError(f"prune: torch-pruning cannot trace this model ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:200] if str(err) else ''})",
                           "list the offending layers under `ignore`, or use mode unstructured") from None
    trajectory = [{"step": 0, "macs": base_macs}]
    reached = plan.target == "ratio"
    latency = None
    for step in range(1, steps + 1):
        if plan.importance == "taylor":
            _accumulate_gradients(module, grad_batches())
        pruner.step()
        module.zero_grad(set_to_none=True)
        module.eval()
        macs = count_macs(module, spec)
        point = {"step": step, "macs": macs, "macs_fraction": round(macs / base_macs, 4)}
        if plan.target == "macs":
            reached = macs <= plan.value * base_macs
        elif plan.target == "latency_ms":
            latency = latency_fn(module)
            point["latency_ms"] = round(latency, 4)
            reached = latency <= plan.value
            ui.info(f"  prune step {step}: {macs / base_macs:.1%} of MACs, ORT {latency:.3f} ms "
                    f"(target {plan.value} ms)")
        trajectory.append(point)
        if reached:
            break
    if not reached:
        ui.warn(f"prune: {plan.target} target {plan.value} not reached within max_layer_ratio "
                f"{plan.max_layer_ratio} (ended at {trajectory[-1]})")
    return {"target": plan.target, "target_value": plan.value, "target_met": reached,
            "steps_taken": len(trajectory) - 1, "trajectory": trajectory, "macs_fraction":
            round(trajectory[-1]["macs"] / base_macs, 4), "ignored_layers": sorted(
                n for n, m in module.named_modules() if any(m is i for i in ignored))}


def _accumulate_gradients(module: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Gradients of the training loss, for first-order Taylor importance (|w * dL/dw|)."""
    module.zero_grad(set_to_none=True)
    module.eval()  # BN statistics stay as trained; only the gradients are needed
    for x, y in batches:
        F.cross_entropy(module(x), y).backward()
