"""What a model asks of its input size and of memory, read from one forward pass on the meta device (shapes
only: nothing is allocated), so that a size the model cannot use or this machine cannot hold is refused
before the first real forward allocates it.

A size below the model's total stride leaves its coarsest feature maps made of padding; activations that do
not fit memory end the run minutes later in an allocation failure, after the data was loaded and measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode

from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel

MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Footprint:
    """One image's forward pass at one input size."""

    activation_bytes: int   # every op's output: what a training step keeps per image for the backward pass
    total_stride: int       # input pixels per pixel of the coarsest strided feature map (1: nothing strided)
    output_shape: tuple[int, ...] | None   # of the batch-1 output; None when it is not one tensor


class _OutputBytes(TorchDispatchMode):
    """Sums the bytes of every new tensor an op returns (views and in-place results allocate nothing)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        schema = func._schema
        if not schema.is_mutable and not any(r.alias_info for r in schema.returns):
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.total += t.numel() * t.element_size()
        return out


def footprint(module: nn.Module, shape: tuple[int, int, int]) -> Footprint | None:
    """The footprint of ``module`` on one ``shape`` (C, H, W) image, or None when the module cannot run on the
    meta device (TorchScript, data-dependent ops): the caller then goes on without the estimate."""
    smallest: list[int] = []

    def strided(mod, inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            smallest.append(int(min(output.shape[-2:])))

    hooks = []
    was_training = module.training
    counter = _OutputBytes()
    # functional_call swaps the meta tensors in and back, but a module registered under two parents (CoaT's
    # shared positional encodings) gets its meta tensor "restored" on the second path: every module's own
    # tensors are put back by hand afterwards.
    own = [(m, store, name, t) for m in module.modules() for store in ("_parameters", "_buffers")
           for name, t in getattr(m, store).items()]
    try:
        for m in module.modules():
            if _stride(m) > 1:
                hooks.append(m.register_forward_hook(strided))
        meta = {name: torch.empty_like(t, device="meta")
                for name, t in [*module.named_parameters(), *module.named_buffers()]}
        module.eval()
        with torch.no_grad(), counter:
            out = functional_call(module, meta, (torch.empty(1, *shape, device="meta"),))
    except Exception:  # noqa: BLE001 - any failure means only that meta cannot run this module
        return None
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
        for m, store, name, t in own:
            getattr(m, store)[name] = t
    coarsest = min(smallest, default=0)
    return Footprint(counter.total, max(1, min(shape[1:]) // coarsest) if coarsest else 1,
                     tuple(out.shape) if isinstance(out, torch.Tensor) else None)


def _stride(module: nn.Module) -> int:
    stride = getattr(module, "stride", 1)
    return max(stride) if isinstance(stride, (tuple, list)) else int(stride or 1)


def check_input_size(loaded: LoadedModel, size: tuple[int, int]) -> None:
    """Refuses ``size`` when it is smaller than the model's total stride at its own input size (the coarsest
    feature map would be padding); silent when the model cannot be traced on the meta device."""
    native = footprint(loaded.module, loaded.spec.input_shape)
    if native is None or min(size) >= native.total_stride:
        return
    s = native.total_stride
    raise EdgekitError(f"--input-size {size[0]}x{size[1]} is smaller than {loaded.source} allows: its layers "
                       f"downsample by {s}, so the input must be at least {s}x{s}",
                       f"give --input-size {s}x{s} or more (its own size is "
                       f"{loaded.spec.input_shape[1]}x{loaded.spec.input_shape[2]})")


def check_memory(loaded: LoadedModel, batch: int = 1, device: torch.device | None = None,
                 found: Footprint | None = None) -> None:
    """Refuses the model's input size when a training batch of ``batch`` images needs more activation memory
    than ``device`` (default: this host) has available; silent when either is unknown. ``found``: the
    footprint at the spec's input shape, when the caller has it already."""
    found = found or footprint(loaded.module, loaded.spec.input_shape)
    available = available_bytes(device)
    if found is None or available is None:
        return
    cuda = device is not None and device.type == "cuda"
    # On CUDA training runs in mixed precision by default (TrainParams.amp): 16-bit activations, half the bytes.
    per_image = found.activation_bytes // 2 if cuda else found.activation_bytes
    need = per_image * batch
    if need <= available:
        return
    c, h, w = loaded.spec.input_shape
    where = str(device) if cuda else "this machine"
    fits = max(1, available // max(per_image, 1))
    raise EdgekitError(f"input {c}x{h}x{w} needs about {_gb(need)} of activations for {loaded.source} at batch "
                       f"{batch} ({_gb(per_image)} per image); {where} has {_gb(available)} available",
                       "give a smaller --input-size" + (f", or a training batch_size of at most {fits} in the recipe"
                                                        if batch > 1 and available >= per_image else ""))


def available_bytes(device: torch.device | None = None) -> int | None:
    """Memory free for new allocations: a CUDA device's free memory, else the host's MemAvailable (the
    kernel's estimate of what can be allocated without swapping); None where neither is known."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"
