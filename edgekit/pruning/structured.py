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

import copy
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgekit import ui
from edgekit.errors import EdgekitError, MissingDependency, first_line
from edgekit.models.complexity import count_macs
from edgekit.pruning.adapters import clear_caches, collect_hints, sync_attributes, tracing
from edgekit.pruning.layers import protected_layers
from edgekit.pruning.guard import is_out_of_memory, memory_guard
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
    attention: Literal["head_dims", "heads"] = "head_dims"   # shrink every head, or remove whole heads


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
    """Prune ``module`` in place; returns what happened (steps, MACs trajectory, target met or not,
    the layers kept unpruned and why).

    ``grad_batches`` yields labelled model-ready batches for Taylor importance; ``latency_fn``
    measures a candidate (median ms) for ``latency_ms`` targets. Attention heads, position
    embeddings and mixed-kernel splits are handled through ``adapters``; a pruning step that breaks
    the model's forward is undone and redone group by group, and the groups that break it are kept
    whole (``auto_ignored`` in the result) instead of failing the model.
    """
    tp = _torch_pruning()
    if plan.importance == "taylor" and grad_batches is None:
        raise EdgekitError("prune: importance 'taylor' needs labelled training data", "use importance l1 or l2")
    if plan.target == "latency_ms" and latency_fn is None:
        raise EdgekitError("prune: a latency_ms target needs a latency measurement")
    module.eval()
    example = torch.randn(1, *spec.input_shape)
    base_macs = count_macs(module, spec)
    ignored_names = set(protected_layers(module, plan.ignore))
    auto_ignored: dict[str, str] = {}
    if plan.target == "ratio":
        final_ratio, steps = plan.value, 1
    else:
        final_ratio, steps = plan.max_layer_ratio, plan.steps
    hints = collect_hints(module, example)
    for path, why in hints.ignored.items():
        auto_ignored[path] = why
    with memory_guard("prune"):
        state = _PrunerState(tp, module, example, plan, final_ratio, steps, ignored_names, auto_ignored)
        state.build(steps)
        reached, trajectory = _run_steps(state, module, spec, plan, steps, base_macs, grad_batches, latency_fn)
    clear_caches(module)
    if not reached:
        ended = trajectory[-1]["macs"] / base_macs
        if plan.target == "macs" and plan.round_to:  # expected where the rounding is coarse (x86-cpu ×64 on AMX)
            ui.info(f"prune: {plan.value:.0%} of the MACs is out of reach with channels ×{plan.round_to} and "
                    f"max_layer_ratio {plan.max_layer_ratio}; stopped at {ended:.1%}")
        else:
            ui.warn(f"prune: {plan.target} target {plan.value} not reached within max_layer_ratio "
                    f"{plan.max_layer_ratio} (ended at {ended:.1%} of the MACs)")
    if auto_ignored:
        ui.warn(f"prune: kept {len(auto_ignored)} layer group(s) unpruned that torch-pruning cannot prune "
                f"consistently (e.g. {next(iter(auto_ignored))}: {next(iter(auto_ignored.values()))})")
    names = {m: n for n, m in module.named_modules()}
    return {"target": plan.target, "target_value": plan.value, "target_met": reached,
            "steps_taken": len(trajectory) - 1, "trajectory": trajectory, "macs_fraction":
            round(trajectory[-1]["macs"] / base_macs, 4),
            "ignored_layers": sorted(n for n in state.ignored_names if n in dict(module.named_modules())),
            "auto_ignored": auto_ignored,
            "attention": {"modules": len(state.hints.attention) + len(state.hints.out_channel_groups),
                          "pruning": "head dims" if plan.attention == "head_dims" else "whole heads",
                          "num_heads": {names.get(q, "?"): int(h) for q, h in state.pruner.num_heads.items()}
                          if state.pruner is not None else {}}}


def _run_steps(state: "_PrunerState", module: nn.Module, spec: ModelSpec, plan: StructuredPlan, steps: int,
               base_macs: int, grad_batches, latency_fn) -> tuple[bool, list[dict]]:
    trajectory = [{"step": 0, "macs": base_macs}]
    reached = plan.target == "ratio"
    latency = None
    for step in range(1, steps + 1):
        if plan.importance == "taylor":
            _accumulate_gradients(module, grad_batches())
        if not state.step(steps - step + 1):
            break  # nothing left that can be pruned without breaking the model
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
    return reached, trajectory


class _PrunerState:
    """The torch-pruning pruner for the current module, rebuilt when a step has to be undone."""

    MAX_REPAIRS = 12  # groups given up on before pruning stops where it is (bounds the time)

    def __init__(self, tp, module: nn.Module, example: torch.Tensor, plan: StructuredPlan, final_ratio: float,
                 steps: int, ignored_names: set[str], auto_ignored: dict[str, str]):
        self.tp, self.module, self.example, self.plan = tp, module, example, plan
        self.final_ratio, self.steps = final_ratio, steps
        self.ignored_names, self.auto_ignored = ignored_names, auto_ignored
        self.pruner = None
        self.hints = None
        self.current_root: nn.Module | None = None
        self.repairs = 0

    def _ignored_modules(self) -> list[nn.Module]:
        layers = []
        for name, m in self.module.named_modules():
            if not isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                continue
            if name in self.ignored_names or any(name == p or name.startswith(p + ".") for p in self.auto_ignored):
                layers.append(m)
        return layers + [h for h in self.hints.heads if h not in layers]

    def build(self, steps_left: int) -> None:
        """A pruner over the current module; after a repair, the remaining steps aim at the same end."""
        tp, plan = self.tp, self.plan
        self.hints = collect_hints(self.module, self.example)
        ratio = self.final_ratio if steps_left == self.steps else self.final_ratio * steps_left / self.steps
        heads = plan.attention == "heads"
        try:
            with tracing(self.module, self.hints):
                self.pruner = tp.pruner.BasePruner(
                    self.module, self.example, importance=_importance(tp, plan.importance),
                    global_pruning=plan.scope == "global", pruning_ratio=ratio,
                    max_pruning_ratio=plan.max_layer_ratio, iterative_steps=steps_left,
                    ignored_layers=self._ignored_modules(), round_to=plan.round_to,
                    num_heads=dict(self.hints.num_heads), out_channel_groups=dict(self.hints.out_channel_groups),
                    prune_num_heads=heads, prune_head_dims=not heads, head_pruning_ratio=ratio if heads else 0.0,
                    unwrapped_parameters=list(self.hints.unwrapped_parameters) or None)
            self._track_groups()
        except MemoryError:
            raise EdgekitError("prune: out of memory while torch-pruning traced the model",
                               "prune at a smaller input size (--input-size), or use mode unstructured") from None
        except Exception as err:  # noqa: BLE001 - graph tracing failures are model-specific
            raise EdgekitError(f"prune: torch-pruning cannot trace this model ({first_line(err, typed=True)})",
                               "list the offending layers under `ignore`, or use mode unstructured") from None

    def step(self, steps_left: int) -> bool:
        """One pruning step that leaves a working model; False when no group could be pruned."""
        backup = _snapshot(self.module)
        try:
            self.pruner.step()
            sync_attributes(self.module, self.hints, self.pruner)
            self._check()
            return True
        except MemoryError:
            raise EdgekitError("prune: out of memory in a pruning step",
                               "prune at a smaller input size (--input-size)") from None
        except Exception as err:  # noqa: BLE001 - redo this step group by group, keeping the culprits
            first = first_line(err, typed=True)
        _restore(self.module, backup)
        try:
            self.build(steps_left)
            return self._step_by_group(steps_left, first)
        except _StopPruning:
            sync_attributes(self.module, self.hints, self.pruner)
            return False

    def _step_by_group(self, steps_left: int, first_error: str) -> bool:
        """Prune group by group, undoing (and from then on keeping unpruned) each group that breaks
        the forward pass or that torch-pruning itself fails on."""
        while True:
            step_backup = _snapshot(self.module)
            names = {m: n for n, m in self.module.named_modules()}
            pruned, failures, restart = 0, 0, False
            groups = iter(self.pruner.step(interactive=True))
            while True:
                self.current_root = None
                try:
                    group = next(groups)
                except StopIteration:
                    break
                except MemoryError:
                    raise EdgekitError("prune: out of memory in a pruning step",
                                       "prune at a smaller input size (--input-size)") from None
                except Exception as err:  # noqa: BLE001 - torch-pruning failed computing this group
                    _restore(self.module, step_backup)
                    self._give_up_on(names.get(self.current_root), err, first_error)
                    self.build(steps_left)
                    restart = True
                    break
                root = group[0].dep.target.module
                backup = _snapshot(self.module)
                try:
                    group.prune()
                    sync_attributes(self.module, self.hints, self.pruner)
                    self._check()
                    pruned += 1
                except MemoryError:
                    raise EdgekitError("prune: out of memory in a pruning step",
                                       "prune at a smaller input size (--input-size)") from None
                except Exception as err:  # noqa: BLE001
                    _restore(self.module, backup)
                    sync_attributes(self.module, self.hints, self.pruner)
                    failures += 1
                    self._give_up_on(names.get(root, type(root).__name__), err, first_error)
            if restart:
                continue
            if failures:
                self.build(max(steps_left - 1, 1))  # later steps keep the culprits whole
            return pruned > 0

    def _give_up_on(self, name: str | None, err: BaseException, first_error: str) -> None:
        """Keep the group rooted at ``name`` unpruned from now on (reported as auto_ignored)."""
        if is_out_of_memory(err):
            raise EdgekitError("prune: out of memory in a pruning step",
                               "prune at a smaller input size (--input-size)") from None
        self.repairs += 1
        if name is None or name in self.auto_ignored or self.repairs > self.MAX_REPAIRS:
            # stop here: the model pruned so far works; the result says why the target was not met
            self.auto_ignored["(pruning stopped)"] = (f"after {self.repairs} groups that break the model "
                                                      f"(last: {name or 'unknown'}: {first_line(err, typed=True)[:120]}; "
                                                      f"first: {first_error[:120]})")
            raise _StopPruning
        self.auto_ignored[name] = f"pruning it breaks the model ({first_line(err, typed=True)[:160]})"

    def _track_groups(self) -> None:
        """Record the root layer of the group torch-pruning is working on, to name it if it fails."""
        graph = self.pruner.DG
        original = graph.get_all_groups

        def groups(*args, **kwargs):
            for group in original(*args, **kwargs):
                self.current_root = group[0].dep.target.module
                yield group

        graph.get_all_groups = groups

    def _check(self) -> None:
        with torch.no_grad():
            self.module.eval()(self.example)


class _StopPruning(Exception):
    """Too many groups break the model: keep the (working) model pruned so far."""


def _snapshot(module: nn.Module) -> nn.Module:
    clear_caches(module)
    return copy.deepcopy(module)


def _restore(module: nn.Module, backup: nn.Module) -> None:
    """Put the backup's weights and attributes back into the *same* module objects (the pruner's
    dependency graph and the caller hold references to them); the tree's structure never changes."""
    for m, b in zip(module.modules(), backup.modules()):
        children = m._modules
        m.__dict__.update({k: v for k, v in b.__dict__.items() if k != "_modules"})
        m._modules = children


def _accumulate_gradients(module: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Gradients of the training loss, for first-order Taylor importance (|w * dL/dw|)."""
    module.zero_grad(set_to_none=True)
    module.eval()  # BN statistics stay as trained; only the gradients are needed
    for x, y in batches:
        F.cross_entropy(module(x), y).backward()
