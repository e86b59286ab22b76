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
from edgekit.models.complexity import count_macs, count_params
from edgekit.pruning.adapters import SLICED, channel_slice_groups, clear_caches, collect_hints, sync_attributes, tracing
from edgekit.pruning.bounds import Deadline, TimeUp, default_seconds
from edgekit.pruning.guard import is_out_of_memory, memory_guard
from edgekit.pruning.layers import protected_layers
from edgekit.pruning.traversal import covering_traversal
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
    max_seconds: float | None = None     # time bound (None: scaled to the model, bounds.default_seconds)


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
    the layers kept unpruned and why, the time bound).

    ``grad_batches`` yields labelled model-ready batches for Taylor importance; ``latency_fn``
    measures a candidate (median ms) for ``latency_ms`` targets. Attention heads, position
    embeddings and mixed-kernel splits are handled through ``adapters``. It fails well: a pruning step
    that breaks (torch-pruning's grouping or importance raising, a group's pruning, the forward pass
    after it) is undone and redone group by group, and the groups that break it are kept whole
    (``auto_ignored``, with the reason); past ``plan.max_seconds`` (default scaled to the model) the
    model pruned so far is kept (``time_bound``); a model torch-pruning cannot trace at all is passed
    through unpruned with one warning (``unpruned``).
    """
    tp = _torch_pruning()
    if plan.importance == "taylor" and grad_batches is None:
        raise EdgekitError("prune: importance 'taylor' needs labelled training data", "use importance l1 or l2")
    if plan.target == "latency_ms" and latency_fn is None:
        raise EdgekitError("prune: a latency_ms target needs a latency measurement")
    module.eval()
    example = torch.randn(1, *spec.input_shape)
    base_macs = count_macs(module, spec)
    seconds = plan.max_seconds if plan.max_seconds is not None else default_seconds(base_macs, count_params(module))
    deadline = Deadline(seconds)
    ignored_names = set(protected_layers(module, plan.ignore))
    auto_ignored: dict[str, str] = {}
    if plan.target == "ratio":
        final_ratio, steps = plan.value, 1
    else:
        final_ratio, steps = plan.max_layer_ratio, plan.steps
    trajectory = [{"step": 0, "macs": base_macs}]
    reached, stopped, unpruned = False, None, None
    with memory_guard("prune"), covering_traversal(deadline) as traversal:
        state = _PrunerState(tp, module, example, plan, final_ratio, steps, ignored_names, auto_ignored, deadline,
                             traversal.failed)
        try:
            state.build(steps)
        except TimeUp:
            unpruned = f"the time bound ({seconds:.0f} s) passed while torch-pruning traced the model"
        except _Untraceable as err:
            unpruned = str(err)
        if unpruned is None:
            reached, trajectory, stopped = _run_steps(state, module, spec, plan, steps, base_macs, grad_batches,
                                                      latency_fn)
            if len(trajectory) == 1 and stopped not in (None, "time"):   # not one group could be pruned
                unpruned, stopped = stopped, None
    clear_caches(module)
    names = {m: n for n, m in module.named_modules()}
    for root, why in traversal.failed.items():   # groups torch-pruning could not build: kept whole
        auto_ignored.setdefault(names.get(root, type(root).__name__), why)
    ended = trajectory[-1]["macs"] / base_macs
    if unpruned is not None:
        ui.warn(f"prune: passed through unpruned: {unpruned}")
    elif stopped == "time":
        ui.warn(f"prune: time bound of {seconds:.0f} s reached after {len(trajectory) - 1} step(s); kept the model "
                f"pruned so far ({ended:.1%} of the MACs; raise it with the prune stage's max_seconds)")
    elif not reached:
        if plan.target == "macs" and plan.round_to:  # expected where the rounding is coarse (x86-cpu ×64 on AMX)
            ui.info(f"prune: {plan.value:.0%} of the MACs is out of reach with channels ×{plan.round_to} and "
                    f"max_layer_ratio {plan.max_layer_ratio}; stopped at {ended:.1%}")
        else:
            ui.warn(f"prune: {plan.target} target {plan.value} not reached within max_layer_ratio "
                    f"{plan.max_layer_ratio} (ended at {ended:.1%} of the MACs)")
    if auto_ignored and unpruned is None:
        ui.warn(f"prune: kept {len(auto_ignored)} layer group(s) unpruned that torch-pruning cannot prune "
                f"consistently (e.g. {next(iter(auto_ignored))}: {next(iter(auto_ignored.values()))})")
    heads = state.pruner.num_heads if state.pruner is not None else {}
    hints = state.hints
    result = {"target": plan.target, "target_value": plan.value, "target_met": reached and unpruned is None,
              "steps_taken": len(trajectory) - 1, "trajectory": trajectory,
              "macs_fraction": round(ended, 4),
              "ignored_layers": sorted(n for n in state.ignored_names if n in dict(module.named_modules())),
              "auto_ignored": auto_ignored,
              "time_bound": {"max_seconds": seconds, "default": plan.max_seconds is None,
                             "seconds": round(deadline.elapsed(), 1), "reached": stopped == "time"
                             or (unpruned is not None and deadline.expired())},
              "attention": {"modules": len(hints.attention) + len(hints.out_channel_groups) if hints else 0,
                            "pruning": "head dims" if plan.attention == "head_dims" else "whole heads",
                            "num_heads": {names.get(q, "?"): int(h) for q, h in heads.items()}}}
    if unpruned is not None:
        result["unpruned"] = unpruned
    if stopped not in (None, "time"):
        result["stopped"] = stopped
    return result


def _run_steps(state: "_PrunerState", module: nn.Module, spec: ModelSpec, plan: StructuredPlan, steps: int,
               base_macs: int, grad_batches, latency_fn) -> tuple[bool, list[dict], str | None]:
    """Steps towards the target; (target reached, MACs trajectory, why pruning stopped early: ``time``
    for the time bound, a sentence otherwise, None when it ran its course)."""
    trajectory = [{"step": 0, "macs": base_macs}]
    reached = plan.target == "ratio"
    stopped = None
    for step in range(1, steps + 1):
        if state.deadline.expired():
            stopped = "time"
            break
        try:
            if plan.importance == "taylor":
                _accumulate_gradients(module, grad_batches())
            pruned = state.step(steps - step + 1)
        except TimeUp:
            stopped = "time"
        except _StopPruning as why:
            stopped = str(why)
        else:
            if not pruned:
                stopped = "no group left that can be pruned without breaking the model"
        module.zero_grad(set_to_none=True)
        module.eval()
        macs = count_macs(module, spec)
        if stopped is not None and macs == trajectory[-1]["macs"]:
            break
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
        if reached or stopped is not None:
            break
    return reached, trajectory, stopped


class _PrunerState:
    """The torch-pruning pruner for the current module, rebuilt when a step has to be undone."""

    MAX_REPAIRS = 24  # groups given up on before pruning stops where it is (each costs a re-trace)

    def __init__(self, tp, module: nn.Module, example: torch.Tensor, plan: StructuredPlan, final_ratio: float,
                 steps: int, ignored_names: set[str], auto_ignored: dict[str, str], deadline: Deadline,
                 ungroupable: dict[nn.Module, str]):
        self.tp, self.module, self.example, self.plan = tp, module, example, plan
        self.final_ratio, self.steps = final_ratio, steps
        self.ignored_names, self.auto_ignored = ignored_names, auto_ignored
        self.deadline = deadline
        self.ungroupable = ungroupable   # roots whose group torch-pruning could not build (traversal)
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
        return layers + [m for m in [*self.hints.heads, *self.ungroupable] if m not in layers]

    def build(self, steps_left: int) -> None:
        """A pruner over the current module; after a repair, the remaining steps aim at the same end.
        Raises ``_Untraceable`` (first build) or ``_StopPruning`` (a rebuild) when torch-pruning fails."""
        tp, plan = self.tp, self.plan
        ratio = self.final_ratio if steps_left == self.steps else self.final_ratio * steps_left / self.steps
        heads = plan.attention == "heads"
        first = self.pruner is None
        try:
            self.deadline.check()
            self.hints = collect_hints(self.module, self.example)
            for path, why in self.hints.ignored.items():
                self.auto_ignored.setdefault(path, why)
            with tracing(self.module, self.hints):  # the timer stops before tracing puts the model back
                with self.deadline.interruptible():
                    self.pruner = tp.pruner.BasePruner(
                        self.module, self.example, importance=_importance(tp, plan.importance),
                        global_pruning=plan.scope == "global", pruning_ratio=ratio,
                        max_pruning_ratio=plan.max_layer_ratio, iterative_steps=steps_left,
                        ignored_layers=self._ignored_modules(), round_to=plan.round_to,
                        num_heads=dict(self.hints.num_heads), out_channel_groups=dict(self.hints.out_channel_groups),
                        prune_num_heads=heads, prune_head_dims=not heads, head_pruning_ratio=ratio if heads else 0.0,
                        unwrapped_parameters=list(self.hints.unwrapped_parameters) or None)
                    self._keep_sliced_channels()
            self._track_groups()
        except (TimeUp, EdgekitError):
            raise
        except MemoryError:
            raise EdgekitError("prune: out of memory while torch-pruning traced the model",
                               "prune at a smaller input size (--input-size), or use mode unstructured") from None
        except Exception as err:  # noqa: BLE001 - graph tracing failures are model-specific
            if is_out_of_memory(err):
                raise
            why = f"torch-pruning cannot trace this model ({first_line(err, typed=True)})"
            if first:
                raise _Untraceable(why) from None
            raise _StopPruning(f"re-tracing after a repair failed: {why}") from None

    def _keep_sliced_channels(self) -> None:
        """torch-pruning's own ``ignored_layers`` for the groups ``channel_slice_groups`` finds; their
        roots are named in ``auto_ignored``."""
        names = {m: n for n, m in self.module.named_modules()}
        for root, layers in channel_slice_groups(self.pruner).items():
            self.pruner.ignored_layers.extend(layers)
            self.auto_ignored.setdefault(names.get(root, type(root).__name__), SLICED)

    def _attempt(self, action: Callable[[], None]) -> None:
        """``action`` (a torch-pruning call that changes the model), then the attributes forward reads
        and a forward pass; under the time bound. On any error the model is put back as it was."""
        backup = self._save()
        try:
            with self.deadline.interruptible():
                action()
                sync_attributes(self.module, self.hints, self.pruner)
                self._check()
        except BaseException:
            self._load(backup)
            raise

    def step(self, steps_left: int) -> bool:
        """One pruning step that leaves a working model; False when no group could be pruned."""
        try:
            self._attempt(self.pruner.step)
            return True
        except (TimeUp, EdgekitError):
            raise
        except MemoryError:
            raise EdgekitError("prune: out of memory in a pruning step",
                               "prune at a smaller input size (--input-size)") from None
        except Exception as err:  # noqa: BLE001 - redo this step group by group, keeping the culprits
            if is_out_of_memory(err):
                raise
            first = first_line(err, typed=True)
        self.build(steps_left)
        return self._step_by_group(steps_left, first)

    def _step_by_group(self, steps_left: int, first_error: str) -> bool:
        """Prune group by group, undoing (and from then on keeping unpruned) each group that breaks
        the forward pass or that torch-pruning itself fails on."""
        while True:
            step_backup = self._save()
            names = {m: n for n, m in self.module.named_modules()}
            pruned, failures, restart = 0, 0, False
            groups = iter(self.pruner.step(interactive=True))
            while True:
                self.current_root = None
                try:
                    with self.deadline.interruptible():
                        group = next(groups)
                except StopIteration:
                    break
                except (TimeUp, EdgekitError):
                    raise
                except MemoryError:
                    raise EdgekitError("prune: out of memory in a pruning step",
                                       "prune at a smaller input size (--input-size)") from None
                except Exception as err:  # noqa: BLE001 - torch-pruning failed computing this group
                    self._load(step_backup)  # the step is redone from its start by a pruner that keeps it whole
                    self._give_up_on(names.get(self.current_root), err, first_error, "grouping or importance")
                    self.build(steps_left)
                    restart = True
                    break
                root = group[0].dep.target.module
                try:
                    self._attempt(group.prune)
                    pruned += 1
                except (TimeUp, EdgekitError):
                    raise
                except MemoryError:
                    raise EdgekitError("prune: out of memory in a pruning step",
                                       "prune at a smaller input size (--input-size)") from None
                except Exception as err:  # noqa: BLE001
                    failures += 1
                    name = names.get(root, type(root).__name__)
                    if name in self.auto_ignored:
                        # kept whole already, yet grouped again from another layer of the same channels (a
                        # residual stream): undone again, and the step goes on with the other groups
                        continue
                    self._give_up_on(name, err, first_error, "pruning it")
            if restart:
                continue
            if failures:
                self.build(max(steps_left - 1, 1))  # later steps keep the culprits whole
            return pruned > 0

    def _give_up_on(self, name: str | None, err: BaseException, first_error: str, what: str) -> None:
        """Keep the group rooted at ``name`` unpruned from now on (reported as auto_ignored)."""
        if is_out_of_memory(err):
            raise EdgekitError("prune: out of memory in a pruning step",
                               "prune at a smaller input size (--input-size)") from None
        self.repairs += 1
        if name is None or name in self.auto_ignored or self.repairs > self.MAX_REPAIRS:
            # stop here: the model pruned so far works; the result says why the target was not met
            raise _StopPruning(f"after {self.repairs} groups that break the model (last: {name or 'unknown'}: "
                               f"{first_line(err, typed=True)[:120]}; first: {first_error[:120]})")
        self.auto_ignored[name] = f"{what} breaks the model ({first_line(err, typed=True)[:160]})"

    def _track_groups(self) -> None:
        """Record the root layer of the group torch-pruning is working on, to name it if it fails."""
        graph = self.pruner.DG
        original = graph.get_all_groups

        def groups(*args, **kwargs):
            for group in original(*args, **kwargs):
                self.current_root = group[0].dep.target.module
                yield group

        graph.get_all_groups = groups

    def _save(self) -> tuple[nn.Module, dict]:
        """The module and the pruner's head counts (head pruning updates them before pruning a group)."""
        return _snapshot(self.module), dict(self.pruner.num_heads) if self.pruner is not None else {}

    def _load(self, saved: tuple[nn.Module, dict]) -> None:
        backup, heads = saved
        _restore(self.module, backup)
        if self.pruner is not None:
            self.pruner.num_heads.clear()
            self.pruner.num_heads.update(heads)

    def _check(self) -> None:
        with torch.no_grad():
            self.module.eval()(self.example)


class _Untraceable(Exception):
    """torch-pruning cannot build a dependency graph of the model (nothing was pruned)."""


class _StopPruning(Exception):
    """Pruning cannot go on (too many groups break the model, or a re-trace failed): keep the
    (working) model pruned so far; the message says why."""


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
