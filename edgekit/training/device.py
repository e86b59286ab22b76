"""Where training and evaluation run: ``--device auto|cpu|cuda|cuda:N``.

Models live on the CPU between stages (checkpoints, stage caches and bundles are device-independent:
a bundle trained on a GPU compiles and profiles on a CPU-only machine); ``train`` and the evaluation
helpers move a model to the current device for their work and give it back on the CPU. The current
device is set once per run by the pipeline (``using_device``) and read by every training and
evaluation helper, so no stage has to thread it through each call.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError

_current: torch.device = torch.device("cpu")


def resolve_device(name: str | None) -> torch.device:
    """``auto`` -> the local GPU when CUDA is available (under torchrun: cuda:LOCAL_RANK), else the CPU.
    Asking for CUDA where there is none is a user error (one line, exit 2), not a silent CPU run."""
    name = (name or "auto").strip().lower()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise EdgekitError(f"--device {name}: CUDA is not available here (torch {torch.__version__}, "
                               f"cuda build: {torch.version.cuda or 'none'})",
                               "use --device cpu, or install a CUDA build of torch on a machine with an NVIDIA GPU")
        index = local_rank if name == "cuda" else _index(name)
        if index >= torch.cuda.device_count():
            raise EdgekitError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise EdgekitError(f"--device {name!r} is not a device", "use auto, cpu, cuda or cuda:N")


def _index(name: str) -> int:
    try:
        return int(name.split(":", 1)[1])
    except ValueError:
        raise EdgekitError(f"--device {name!r} is not a device", "use auto, cpu, cuda or cuda:N") from None


def current_device() -> torch.device:
    return _current


@contextmanager
def using_device(device: torch.device) -> Iterator[torch.device]:
    """Training and evaluation inside the block run on ``device``."""
    global _current
    previous, _current = _current, torch.device(device)
    if _current.type == "cuda":
        torch.cuda.set_device(_current)
    try:
        yield _current
    finally:
        _current = previous


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module without tensors)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


@contextmanager
def on_device(module: nn.Module, device: torch.device | None = None) -> Iterator[torch.device]:
    """Runs the block with ``module`` on ``device`` (default: the current one), then moves it back where
    it was. A no-op on the CPU, so CPU-only behaviour is exactly what it was before devices existed."""
    device = torch.device(device) if device is not None else _current
    before = module_device(module)
    moved = before != device
    if moved:
        module.to(device)
    try:
        yield device
    finally:
        if moved:
            module.to(before)


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the state dict: what checkpoints and best-epoch snapshots keep."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def to_cpu(obj):
    """Tensors anywhere in a nested dict/list (an optimizer state) moved to the CPU, for saving."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


@contextmanager
def channels_last(module: nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Runs the block with ``module`` in channels_last memory format (when ``enabled``), then gives it back
    contiguous: what evaluation and a distillation teacher use around their forwards."""
    if enabled:
        module.to(memory_format=torch.channels_last)
    try:
        yield enabled
    finally:
        if enabled:
            module.to(memory_format=torch.contiguous_format)
