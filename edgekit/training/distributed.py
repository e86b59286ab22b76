"""Data-parallel training under ``torchrun`` (or any launcher that sets WORLD_SIZE/RANK/MASTER_ADDR).

The same ``train`` loop runs in every process: the model is wrapped in DistributedDataParallel, each
process reads its shard of the data through a DistributedSampler, only rank 0 writes checkpoints
and bundles. CPU processes use the gloo backend; on CUDA each rank trains on its node-local GPU
(``LOCAL_RANK``, set by torchrun) and the group uses NCCL. edgekit has no launcher of its own:

    torchrun --nproc_per_node 2 -m edgekit compress -m teacher.pt -d digits -r recipes/distill.yaml
    # two nodes with 8 GPUs each (run on both; the c10d rendezvous needs no edgekit-specific setup):
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint node0:29400 \
        --rdzv-id run1 -m edgekit compress --device cuda -m torchvision:resnet50 -d /data/imgs -r r.yaml
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn as nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_if_launched(device: torch.device | None = None) -> bool:
    """Join the process group when started by a launcher; True when running distributed. The backend
    follows the training device: NCCL for CUDA (this rank's GPU selected first), gloo for the CPU - also
    on a GPU machine run with ``--device cpu``, where NCCL would have no CUDA tensors to reduce."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        if device is not None and device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
        if not is_main():
            from edgekit import ui

            ui.set_quiet(True)  # one progress display (rank 0's), not one per process
    return True


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def wrap(model: nn.Module, device: torch.device | None = None) -> nn.Module:
    """DDP wrapper (gradients all-reduced in backward); the inner module stays the one to save."""
    from torch.nn.parallel import DistributedDataParallel

    if device is not None and device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index], output_device=device.index,
                                       broadcast_buffers=True)
    return DistributedDataParallel(model, broadcast_buffers=True)


def average_gradients(module: nn.Module) -> None:
    """All-reduce (mean) the gradients of modules trained outside the DDP wrapper (feature adapters)."""
    size = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(size)


def distributed_sampler(dataset, seed: int):
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
