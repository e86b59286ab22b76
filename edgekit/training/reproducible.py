"""Same seed, data, recipe and thread count -> the same weights on one machine.

Why each setting: torch (2.14) seeds its global generator from the OS at start-up, so anything that draws from
it unseeded - a builtin model's random init above all - differs in every process; two runs of the benchmark
teacher that differed by 3.2 top-1 points (issue 39) started from different random inits. The thread count sets
how float reductions split (a conv's backward summed over 1 or 2 chunks gives different last bits), so it is
fixed for the training and recorded with it. ``torch.use_deterministic_algorithms(True, warn_only=True)`` picks
the deterministic kernel where one exists and warns (once) where none does, rather than failing a run; on CUDA
cuDNN's autotuner is off (its choice depends on timing) and cuBLAS gets the workspace setting its determinism
needs. Every setting is restored on exit: a library user's process is theirs.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.utils.deterministic


def seed_everything(seed: int) -> None:
    """torch (CPU and every GPU), numpy's and Python's global generators: what unseeded draws (a model's random
    init, dropout, mixup) read."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextmanager
def reproducible(threads: int | None = None, cuda: bool = False) -> Iterator[int]:
    """Runs the block with deterministic kernels where torch has them and ``threads`` intra-op threads (None:
    torch's current count, i.e. the cores); yields the thread count in force (what a report records)."""
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
              torch.utils.deterministic.fill_uninitialized_memory)
    if threads is not None:
        torch.set_num_threads(threads)
    if cuda:
        # read when cuBLAS creates its handle: effective for a process's first CUDA work (edgekit's training)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every torch.empty with NaN, a memset per allocation: a guard against code
    # that reads memory it never wrote, which training does not; off, for speed.
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[3], before[4]
        torch.utils.deterministic.fill_uninitialized_memory = before[5]


def seeded_model(source: str, num_classes: int, seed: int):
    """``load_model`` with the global generators seeded first: a builtin (random-init) model is then the same
    model in every process. Unseeded, its init is whatever torch's start-up seed or earlier draws left - the cause
    of two benchmark teachers of one command landing 3.2 points apart (issue 39)."""
    from edgekit.models.sources import load_model

    seed_everything(seed)
    return load_model(source, num_classes=num_classes)
