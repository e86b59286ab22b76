"""torch-pruning's group traversal, bounded, and failing one group at a time.

Three changes to how torch-pruning (1.6) builds groups, active under ``covering_traversal``:

- **Each channel once.** To build a group, torch-pruning walks the dependency graph from the root
  layer's channels and stops at a node only when it meets the *identical* index list again. Where a
  graph reaches one layer through several paths that carry different subsets of its channels, every
  distinct subset is walked again downstream: a chain of partial residuals (ReXNet's
  ``cat([x[:, :c] + shortcut, x[:, c:]])`` in every block) makes that exponential in the depth, and
  building the groups of a 3.5M-parameter model did not finish in 15 minutes. Every index mapping
  torch-pruning applies (slice, concat, split, flatten, reshape, expand) maps channel by channel, so
  walking channels that the group already holds for the same layer and pruning function adds nothing:
  the walk stops there. The groups are the same layers and channels as before; only which root channel
  a coupled channel's importance is credited to can differ where one channel is reached from several
  roots (it was the order of the walk before as well).
- **Bounded.** A reshape torch-pruning reads as a flatten multiplies the indices by the flattened size;
  through a global-context block (``x.view(B, C, H * W)`` then a matmul) it did so again and again until
  the process ran out of memory. A group that would hold more than ``MAX_GROUP_INDICES`` indices fails.
  The walk also checks the pruning time bound.
- **One group fails, not the graph.** ``get_all_groups`` (the loop every pruner step and the pruner's
  constructor run) skips a root whose group cannot be built and records why (``Traversal.failed``): the
  rest of the model is still grouped and pruned, that group's layers keep their channels.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch.nn as nn

from edgekit.errors import first_line
from edgekit.pruning.bounds import Deadline, TimeUp

MAX_GROUP_INDICES = 250_000   # a ViT-B/16 group holds ~10^5 (768 dims x its layers), VGG's flatten 25k


class GroupTooLarge(Exception):
    """A group whose index lists grow past ``MAX_GROUP_INDICES``."""


@dataclass
class Traversal:
    failed: dict[nn.Module, str] = field(default_factory=dict)   # group root -> why it cannot be grouped


@contextlib.contextmanager
def covering_traversal(deadline: Deadline | None = None) -> Iterator[Traversal]:
    """While active, torch-pruning builds groups as the module docstring says; yields the record of
    the roots whose group failed."""
    from torch_pruning import ops
    from torch_pruning.dependency import graph as tp_graph, group as tp_group, index_mapping

    state = Traversal()
    originals = (tp_group.Group.has_pruning_op, tp_group.Group.add_dep,
                 index_mapping._FlattenIndexMapping.__call__, tp_graph.DependencyGraph.get_all_groups)
    has_op, add_dep, flatten, _ = originals

    def has_pruning_op(self, dep, idxs) -> bool:
        if deadline is not None:
            deadline.check()
        held = _held(self).get((dep.target, dep.handler), ())
        return all(_plain(i) in held for i in idxs)

    def bounded_add_dep(self, dep, idxs) -> None:
        count = getattr(self, "_edgekit_indices", 0) + len(idxs)
        if count > MAX_GROUP_INDICES:
            raise GroupTooLarge(f"its group grows past {MAX_GROUP_INDICES:,} channel indices (a reshape "
                                "torch-pruning reads as a flatten, again and again)")
        self._edgekit_indices = count
        add_dep(self, dep, idxs)
        _held(self).setdefault((dep.target, dep.handler), set()).update(_plain(i) for i in idxs)

    def bounded_flatten(self, idxs):
        if not self.reverse and len(idxs) * self._stride > MAX_GROUP_INDICES:
            raise GroupTooLarge(f"a reshape maps {len(idxs):,} channel indices to {len(idxs) * self._stride:,}")
        return flatten(self, idxs)

    def get_all_groups(self, ignored_layers=(), root_module_types=None):
        types = tuple(root_module_types) if root_module_types else (ops.TORCH_CONV, ops.TORCH_LINEAR)
        yield from _groups(self, list(ignored_layers), types, state)

    tp_group.Group.has_pruning_op = has_pruning_op
    tp_group.Group.add_dep = bounded_add_dep
    index_mapping._FlattenIndexMapping.__call__ = bounded_flatten
    tp_graph.DependencyGraph.get_all_groups = get_all_groups
    try:
        yield state
    finally:
        (tp_group.Group.has_pruning_op, tp_group.Group.add_dep, index_mapping._FlattenIndexMapping.__call__,
         tp_graph.DependencyGraph.get_all_groups) = originals


def _groups(graph, ignored_layers: list, root_module_types: tuple, state: Traversal):
    """torch-pruning 1.6's ``DependencyGraph.get_all_groups``, line for line, but a root whose group
    cannot be built is skipped (recorded in ``state.failed``) instead of ending the loop."""
    visited_layers = []
    ignored_layers = ignored_layers + graph.IGNORED_LAYERS_IN_TRACING
    for m in list(graph.module2node.keys()):
        if m in ignored_layers or m in state.failed or not isinstance(m, root_module_types):
            continue
        pruner = graph.get_pruner_of_module(m)
        if pruner is None or pruner.get_out_channels(m) is None or m in visited_layers:
            continue
        try:
            group = graph.get_pruning_group(m, pruner.prune_out_channels, list(range(pruner.get_out_channels(m))))
        except (TimeUp, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - MemoryError included: the group's lists are dropped here
            state.failed[m] = f"torch-pruning cannot group its channels ({first_line(err, 160, typed=True)})"
            continue
        prunable = True
        for dep, _ in group:
            if graph.is_out_channel_pruning_fn(dep.handler):
                visited_layers.append(dep.target.module)
                if dep.target.module in ignored_layers:
                    prunable = False
        if prunable:
            yield group


def _held(group) -> dict:
    """{(node, pruning function): channel indices} of a group being built, kept as items are added (the
    group's own lookup scans every item on every visit)."""
    held = getattr(group, "_edgekit_held", None)
    if held is None:
        held = group._edgekit_held = {}
    return held


def _plain(index) -> int:
    """A channel index, from torch-pruning's (idx, root_idx) pair or a plain int."""
    return index.idx if hasattr(index, "idx") else int(index)
