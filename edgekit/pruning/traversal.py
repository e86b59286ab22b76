"""torch-pruning's group traversal, visiting each (layer, pruning function, channel) once.

To build a group, torch-pruning walks the dependency graph from the root layer's channels and stops
at a node only when it meets the *identical* index list again. Where a graph reaches one layer
through several paths that carry different subsets of its channels, every distinct subset is walked
again downstream: a chain of partial residuals (ReXNet's ``cat([x[:, :c] + shortcut, x[:, c:]])``
in every block) makes that exponential in the depth, and building the groups of a 3.5M-parameter
model did not finish in 15 minutes.

Every index mapping torch-pruning applies (slice, concat, split, flatten, reshape, expand) maps
channel by channel, so walking channels that this group already holds for the same layer and pruning
function adds nothing that the group does not already hold: under ``covering_traversal`` the walk
stops there. The groups are the same layers and channels as before; only which root channel a
coupled channel's importance is credited to can differ where one channel is reached from several
roots (it was the order of the walk before as well). The walk also checks the pruning time bound.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from edgekit.pruning.bounds import Deadline


@contextlib.contextmanager
def covering_traversal(deadline: Deadline | None = None) -> Iterator[None]:
    """While active, torch-pruning's ``Group.has_pruning_op`` answers "these channels are already in the
    group" for any subset of what the group holds for that layer and function (see the module doc)."""
    from torch_pruning.dependency import group as tp_group

    original = tp_group.Group.has_pruning_op

    def has_pruning_op(self, dep, idxs) -> bool:
        if deadline is not None:
            deadline.check()
        held: set[int] = set()
        for item_dep, item_idxs in self._group:
            if item_dep.target == dep.target and item_dep.handler == dep.handler:
                held.update(_plain(i) for i in item_idxs)
        return all(_plain(i) in held for i in idxs)

    tp_group.Group.has_pruning_op = has_pruning_op
    try:
        yield
    finally:
        tp_group.Group.has_pruning_op = original


def _plain(index) -> int:
    """A channel index, from torch-pruning's (idx, root_idx) pair or a plain int."""
    return index.idx if hasattr(index, "idx") else int(index)
