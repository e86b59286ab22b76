"""Supervised training loop shared by every training stage.

One loop so that every stage gets the same behaviour users expect: progress bar with live loss,
cosine LR with warm-up, early stop on validation accuracy with best-weights restore, per-epoch
checkpoints and ``resume``. It runs on the current device (``edgekit.training.device``): on a GPU with
mixed precision the GPU way (bf16 autocast where the GPU has bf16, else fp16 with a gradient scaler) and
channels_last by default; on the CPU with the recipe's bf16 / channels_last settings, as before.
Checkpoints hold CPU tensors, so a run resumes (and a bundle compiles) on any machine. The *objective* is what varies between stages (CE, KD, feature matching), so stages
pass one in.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from edgekit import ui
from edgekit.data.core import DataSplits, make_loader
from edgekit.locks import held
from edgekit.spec import ModelSpec
from edgekit.training import batchnorm, distributed
from edgekit.training.augment import random_crop_flip
from edgekit.training.device import cpu_state_dict, current_device, module_device, to_cpu
from edgekit.training.evaluate import evaluate_module
from edgekit.training.reproducible import reproducible, seed_everything
from edgekit.vocab import Amp


class TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(3, ge=0)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.05, gt=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = True
    crop_pad: int = 2
    hflip: bool | None = Field(None, description="random left-right flips [default: when the dataset is "
                               "mirror-invariant, i.e. not for digits]")
    patience: int | None = Field(None, description="early stop after this many validations (epochs, unless "
                                 "val_every) without val improvement")
    min_epochs: int = Field(0, ge=0, description="early stopping waits until this many epochs have run: at a "
                            "still-high learning rate the val accuracy is noisy (a spike or a dip that the "
                            "network recovers from), and stopping there keeps an unconverged model")
    keep: Literal["best", "last"] = Field("best", description="weights to keep at the end: the best epoch on val, "
                                          "or the last one (a schedule that decays to zero converges there, and "
                                          "picking the best of a noisy val subset can pick an early epoch)")
    bf16: bool = Field(False, description="bf16 autocast (fast for dense convs on CPUs with AVX512-BF16/AMX; "
                                                "models with depthwise convs train in fp32: bf16 is slower for them)")
    channels_last: bool | None = Field(None, description="channels_last memory format [default: on CUDA, "
                                       "where cuDNN's NHWC kernels are faster under AMP; off on the CPU]")
    amp: Amp = Field(Amp.AUTO, description="mixed precision on CUDA: auto = "
                                                        "bf16 where the GPU supports it, else fp16 with a "
                                                        "gradient scaler. On the CPU, ``bf16`` decides")
    compile: bool = Field(False, description="torch.compile the model for training (minutes of compile time "
                          "first; pays off on long GPU runs)")
    workers: int | None = Field(None, ge=0, description="DataLoader worker processes for image folders "
                                "[default: the cores available minus one, at most 8]")
    max_steps_per_epoch: int | None = None
    min_steps: int | None = Field(None, ge=1, description="train at least this many steps in all: a small "
                                  "dataset gets more epochs (a recipe tuned on 60k images still converges on 2k)")
    eval_limit: int | None = Field(None, description="cap on val images per epoch (speed)")
    val_every: int = Field(1, ge=1, description="validate every N epochs, and always after the last one. With "
                           "keep: last and no patience, validation only reports progress: a long recipe can "
                           "validate less often and spend the time on training")
    recalibrate_bn: bool | None = Field(None, description="re-estimate BatchNorm statistics on 32 training "
                                        "batches before each validation [default: when a layer's momentum is "
                                        "below PyTorch's 0.1, as in torchvision's MobileNetV3: its statistics "
                                        "lag the weights, and eval-mode accuracy after a short training can be "
                                        "near chance]")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch intra-op threads while training [default: torch's "
                                "own, the cores]. The count sets how float sums split, so the same seed gives the "
                                "same weights only at the same count; the report records it")


class Objective(Protocol):
    """Computes the training loss of ``model`` on a prepared batch. May hold a teacher."""

    def __call__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them oneDNN emulates bf16 and autocast runs several times *slower* than
    fp32 (a ResNet-18 training step on an AVX2-only CPU: about 3x the fp32 time)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private probe; assume support rather than silently slow down
        return True


def use_bf16(params: TrainParams, model: nn.Module, description: str) -> bool:
    """The recipe's bf16 setting, unless it would run far slower than fp32 (no native bf16 on this CPU, or
    depthwise convolutions): then fp32, said once."""
    blocker = bf16_blocker(params, model)
    if blocker is not None:
        ui.warn(f"{description}: {blocker}: training in fp32")
    return params.bf16 and blocker is None


def bf16_blocker(params: TrainParams, model: nn.Module) -> str | None:
    """Why CPU training of ``model`` runs fp32 although the recipe asks for bf16 (None: it runs bf16, or the
    recipe asks for fp32). The distill stage reads it too: its teacher runs at the training's precision."""
    if not params.bf16:
        return None
    if not cpu_has_native_bf16():
        return "this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 autocast is several times slower than fp32"
    if has_depthwise_conv(model):
        # a MobileNetV3's training step under bf16 autocast is about 3x slower than fp32 even with AVX512-BF16,
        # an order of magnitude without it
        return "bf16 autocast is several times slower than fp32 for depthwise convolutions on CPU"
    return None


def has_depthwise_conv(model: nn.Module) -> bool:
    """Depthwise convs run far slower under CPU bf16 autocast than in fp32 (see TrainParams.bf16)."""
    return any(isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels for m in model.modules())


def mixed_precision(params: TrainParams, model: nn.Module, device: torch.device, description: str
                    ) -> tuple[object, torch.amp.GradScaler | None, str]:
    """(autocast context, gradient scaler or None, what was chosen) for this device and recipe."""
    if device.type == "cuda":
        mode = params.amp
        if mode == Amp.AUTO:
            mode = Amp.BF16 if torch.cuda.is_bf16_supported() else Amp.FP16
        if mode == Amp.BF16:
            return torch.autocast("cuda", dtype=torch.bfloat16), None, "bf16 autocast"
        if mode == Amp.FP16:
            return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda"), "fp16 autocast + GradScaler"
        return nullcontext(), None, "fp32"
    if use_bf16(params, model, description):
        return torch.autocast("cpu", dtype=torch.bfloat16), None, "bf16 autocast (cpu)"
    return nullcontext(), None, "fp32"


def cross_entropy(label_smoothing: float = 0.0) -> Objective:
    def objective(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(inputs).float(), labels, label_smoothing=label_smoothing)

    return objective


class TrainReport(BaseModel):
    epochs_run: int
    best_epoch: int
    best_val_top1: float
    kept_epoch: int | None = None      # whose weights the model has now (TrainParams.keep)
    history: list[dict[str, float | None]]   # val_top1 None on epochs that did not validate (val_every)
    stopped_early: bool
    resumed_from_epoch: int | None = None
    seconds: float
    steps_per_epoch: int = 0
    world_size: int = 1
    device: str = "cpu"
    precision: str = "fp32"
    images_per_s: float = 0.0
    max_memory_mb: float | None = None   # CUDA: torch.cuda.max_memory_allocated during this training
    threads: int | None = None           # torch intra-op threads it trained with (same seed + count: same weights)
    seed: int | None = None


def uses_channels_last(params: TrainParams, device: torch.device) -> bool:
    """The recipe's ``channels_last``, else on for CUDA only (what ``train`` and a distill teacher follow)."""
    return params.channels_last if params.channels_last is not None else device.type == "cuda"


def train(model: nn.Module, spec: ModelSpec, data: DataSplits, params: TrainParams,
          objective: Objective | None = None, description: str = "train",
          checkpoint_dir: Path | None = None, resume: bool = False,
          trainable: list[nn.Parameter] | None = None, sampler=None,
          extra_modules: nn.Module | None = None) -> TrainReport:
    """``_train`` holding the lock on ``checkpoint_dir`` (a stage's cache entry): a second run training the
    same stage at the same time waits, then resumes from the first one's checkpoint, instead of both
    writing one ``train_state.pt``. Only the writing rank locks (the others never write, and a lock held
    across ranks would deadlock DistributedDataParallel)."""
    guard = nullcontext()
    if checkpoint_dir is not None and distributed.is_main():
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        guard = held(checkpoint_dir / ".lock")
    with guard, reproducible(params.threads, current_device().type == "cuda") as threads:
        report = _train(model, spec, data, params, objective, description, checkpoint_dir, resume, trainable,
                        sampler, extra_modules)
    return report.model_copy(update={"threads": threads, "seed": params.seed})


def _train(model: nn.Module, spec: ModelSpec, data: DataSplits, params: TrainParams,
           objective: Objective | None = None, description: str = "train",
           checkpoint_dir: Path | None = None, resume: bool = False,
           trainable: list[nn.Parameter] | None = None, sampler=None,
           extra_modules: nn.Module | None = None) -> TrainReport:
    """Train ``model`` in place; restores the best-on-val weights at the end.

    ``trainable`` restricts optimisation (frozen parts stay as they are); ``extra_modules`` are
    trained alongside (e.g. feature adapters) and checkpointed with the model. Under ``torchrun``
    (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel and each process trains on its
    shard (a DistributedSampler unless ``sampler`` is given); only rank 0 writes checkpoints.
    """
    device = current_device()
    is_distributed = distributed.init_if_launched(device)
    hflip = params.hflip if params.hflip is not None else data.mirror_invariant
    # Photo folders augment per item in the loader workers (random-resized-crop + flip at the model's size);
    # other data gets the batch-level crop/flip below.
    train_ds = data.train.augmented(hflip) if params.augment and hasattr(data.train, "augmented") else None
    per_item_augment = train_ds is not None
    train_ds = train_ds if per_item_augment else data.train
    if is_distributed and sampler is None:
        sampler = distributed.distributed_sampler(train_ds, params.seed)
    seed_everything(params.seed)
    objective = objective or cross_entropy(params.label_smoothing)
    gen = torch.Generator().manual_seed(params.seed)
    cuda = device.type == "cuda"
    loader = make_loader(train_ds, params.batch_size, shuffle=True, seed=params.seed, sampler=sampler,
                         drop_last=len(train_ds) > params.batch_size, workers=params.workers, pin_memory=cuda,
                         persistent=True)
    home = module_device(model)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    model.to(device)
    if extra_modules is not None:
        extra_modules.to(device)
    steps_per_epoch = min(len(loader), params.max_steps_per_epoch or len(loader))
    epochs = params.epochs
    if params.min_steps and epochs:
        epochs = max(epochs, math.ceil(params.min_steps / steps_per_epoch))
    total_steps = max(1, steps_per_epoch * epochs)
    warmup = int(params.warmup_epochs * steps_per_epoch)
    params_to_train = trainable if trainable is not None else list(model.parameters())
    if extra_modules is not None:
        params_to_train = params_to_train + list(extra_modules.parameters())
    optimizer = _optimizer(params, params_to_train)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _cosine(s, total_steps, warmup))
    channels_last = uses_channels_last(params, device)
    recalibrate_bn = batchnorm.needs_recalibration(model) if params.recalibrate_bn is None else params.recalibrate_bn
    if channels_last:
        model.to(memory_format=torch.channels_last)
    autocast, scaler, precision = mixed_precision(params, model, device, description)
    forward_model = distributed.wrap(model, device) if is_distributed else model
    if params.compile:
        forward_model = torch.compile(forward_model)

    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "best_state": None, "history": [], "bad_epochs": 0}
    resumed_from = None
    ckpt_path = checkpoint_dir / "train_state.pt" if checkpoint_dir else None
    if resume and ckpt_path and ckpt_path.exists():
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        if extra_modules is not None and saved.get("extra") is not None:
            extra_modules.load_state_dict(saved["extra"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        gen.set_state(saved["generator"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        if "rng" in saved:  # checkpoints from before faithful resume lack it: they resume, less exactly
            _set_rng_state(saved["rng"], loader, sampler)
        state.update({k: saved[k] for k in ("epoch", "best", "best_epoch", "best_state", "history", "bad_epochs")})
        resumed_from = state["epoch"]
        ui.info(f"resuming {description} from epoch {resumed_from} ({ckpt_path})")

    start = time.perf_counter()
    images_done, train_seconds = 0, 0.0
    stopped_early = False
    for epoch in range(state["epoch"], epochs):
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        model.train()
        if extra_modules is not None:
            extra_modules.train()
        running, seen = 0.0, 0
        epoch_start = time.perf_counter()
        with ui.progress(f"{description} epoch {epoch + 1}/{epochs}", steps_per_epoch) as bar:
            for step, (images, labels) in enumerate(loader):
                if step >= steps_per_epoch:
                    break
                # uint8 to the device, then prepared there (a quarter of the bytes of a float batch)
                x = spec.prepare(images.to(device, non_blocking=cuda))
                labels = labels.to(device, non_blocking=cuda)
                if params.augment and model.training and not per_item_augment:
                    x = random_crop_flip(x, params.crop_pad, hflip, gen)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast:
                    loss = objective(forward_model, x, labels)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
                if is_distributed and extra_modules is not None:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    distributed.average_gradients(extra_modules)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                schedule.step()
                running += float(loss.detach()) * len(labels)
                seen += len(labels)
                bar.advance(loss=running / seen, lr=schedule.get_last_lr()[0])
        images_done += seen
        train_seconds += time.perf_counter() - epoch_start
        train_loss = running / max(seen, 1)
        if (epoch + 1) % params.val_every == 0 or epoch + 1 == epochs:
            if recalibrate_bn:
                batchnorm.recalibrate(model, spec, data.train, 32, params.seed, device, channels_last,
                                      params.batch_size)
            val = evaluate_module(model, spec, data.val, limit=params.eval_limit)
            state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "val_top1": val["top1"]})
            ui.info(f"  {description} epoch {epoch + 1}: loss {train_loss:.4f}, val top-1 {val['top1']:.2f}%")
            if val["top1"] > state["best"]:
                state.update(best=val["top1"], best_epoch=epoch + 1, bad_epochs=0,
                             best_state=cpu_state_dict(model))
            else:
                state["bad_epochs"] += 1
        else:   # not a validation epoch (val_every): the loss only
            state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "val_top1": None})
            ui.info(f"  {description} epoch {epoch + 1}: loss {train_loss:.4f}")
        state["epoch"] = epoch + 1
        if ckpt_path and distributed.is_main():
            _save_state(ckpt_path, model, extra_modules, optimizer, schedule, gen, state,
                        _rng_state(loader, sampler), scaler)
        distributed.barrier()
        if (params.patience is not None and state["bad_epochs"] >= params.patience
                and params.min_epochs <= state["epoch"] < epochs):   # at the last epoch nothing is cut short
            stopped_early = True
            ui.info(f"  early stop: no val improvement for {params.patience} epochs")
            break
    if state["best_state"] is not None and params.keep == "best":
        model.load_state_dict(state["best_state"])
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.to(home)  # back where it came from (the CPU between stages): caches and bundles stay device-free
    if extra_modules is not None:
        extra_modules.to(home)
    model.eval()
    kept = state["best_epoch"] if params.keep == "best" and state["best_state"] is not None else state["epoch"]
    return TrainReport(epochs_run=state["epoch"], best_epoch=state["best_epoch"], best_val_top1=state["best"],
                       kept_epoch=kept,
                       history=state["history"], stopped_early=stopped_early, resumed_from_epoch=resumed_from,
                       seconds=round(time.perf_counter() - start, 2), steps_per_epoch=steps_per_epoch,
                       world_size=distributed.world_size(), device=str(device), precision=precision,
                       images_per_s=round(images_done / train_seconds, 2) if train_seconds > 0 else 0.0,
                       max_memory_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None)


def _optimizer(params: TrainParams, tensors: list[nn.Parameter]) -> torch.optim.Optimizer:
    tensors = [p for p in tensors if p.requires_grad]
    if params.optimizer == "adamw":
        return torch.optim.AdamW(tensors, lr=params.lr, weight_decay=params.weight_decay)
    return torch.optim.SGD(tensors, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay,
                           nesterov=True)


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _save_state(path: Path, model, extra, optimizer, schedule, gen, state, rng: dict, scaler=None) -> None:
    """CPU tensors only, so a run started on a GPU resumes on any machine (``map_location="cpu"`` on load)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": cpu_state_dict(model), "extra": cpu_state_dict(extra) if extra is not None else None,
                "optimizer": to_cpu(optimizer.state_dict()), "schedule": schedule.state_dict(),
                "generator": gen.get_state(), "rng": rng,
                "scaler": scaler.state_dict() if scaler is not None else None, **state}, tmp)
    tmp.replace(path)


def _rng_state(loader, sampler) -> dict:
    """Every random state the next epoch draws from, so a resumed run continues the same sequence: the
    loader's shuffle generator (a new loader would replay epoch 0's order), a sampler's own generator,
    and the global torch / numpy / Python RNGs (mixup, dropout, user objectives). Stored as tensors and
    plain tuples so the checkpoint loads with ``weights_only=True``."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    sampler_gen = getattr(sampler, "generator", None)
    # the loader's own sampler (shuffle order / per-item augmentation seeds; see make_loader)
    seeds_gen = getattr(loader.sampler, "generator", None) if loader.sampler is not sampler else None
    return {"loader": loader.generator.get_state() if loader.generator is not None else None,
            "sampler": sampler_gen.get_state() if isinstance(sampler_gen, torch.Generator) else None,
            "loader_sampler": seeds_gen.get_state() if isinstance(seeds_gen, torch.Generator) else None,
            "torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss)}


def _set_rng_state(rng: dict, loader, sampler) -> None:
    if rng.get("loader") is not None and loader.generator is not None:
        loader.generator.set_state(rng["loader"])
    sampler_gen = getattr(sampler, "generator", None)
    if rng.get("sampler") is not None and isinstance(sampler_gen, torch.Generator):
        sampler_gen.set_state(rng["sampler"])
    seeds_gen = getattr(loader.sampler, "generator", None) if loader.sampler is not sampler else None
    if rng.get("loader_sampler") is not None and isinstance(seeds_gen, torch.Generator):
        seeds_gen.set_state(rng["loader_sampler"])
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = rng["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
