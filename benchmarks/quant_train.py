"""Train (once) the two Fashion-MNIST models the quantization benchmark compiles, cached under
benchmarks/cache/ so reruns reuse them. Run: ``nice -n 10 python -m benchmarks.quant_train``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from edgekit.data import load_data
from edgekit.models import load_checkpoint, load_model, save_checkpoint
from edgekit.training import TrainParams, evaluate_module, train

CACHE = Path(__file__).resolve().parent / "cache"
# name -> (model source, epochs, lr, max steps per epoch of 128 images, bf16 autocast + channels_last).
# bf16 autocast makes MobileNetV3 ~18x *slower* on this CPU (depthwise convs, SE blocks: 0.47 s fp32 vs
# 8.7 s bf16 per step of 128, measured 2026-11-25), so it trains in fp32.
MODELS = {
    "resnet20": ("builtin:resnet20", 1, 0.1, 160, True),
    "mobilenetv3s": ("builtin:mobilenetv3s_32", 3, 0.1, None, False),
    # The ResNet-18 teacher of the shrink benchmarks (benchmarks/_teacher.py RESNET18): the ResNet-18
    # layout at quarter width for 28 px, 3 full epochs.
    "resnet18": ("builtin:resnet18_28", 3, 0.1, None, True),
}


def trained(name: str):
    """The cached trained checkpoint for ``name``, training it first when missing."""
    source, epochs, lr, steps, fast = MODELS[name]
    if name == "resnet18":  # shared with the shrink benchmarks, trained once
        from benchmarks._teacher import resnet18_teacher

        return load_checkpoint(resnet18_teacher())
    path = CACHE / f"fmnist-{name}{'' if steps else '-full'}-e{epochs}.pt"
    if path.exists():
        return load_checkpoint(path)
    torch.manual_seed(0)
    model = load_model(source, num_classes=10)
    data = load_data("fashion-mnist", image_size=model.spec.hw)
    train(model.module, model.spec, data, TrainParams(epochs=epochs, lr=lr, batch_size=128, crop_pad=2,
                                                      hflip=True, warmup_epochs=0.1, eval_limit=1000,
                                                      max_steps_per_epoch=steps, bf16=fast,
                                                      channels_last=fast),
          description=f"train {name}")
    top1 = evaluate_module(model.module, model.spec, data.test)["top1"]
    model.notes = {"weights": f"trained by benchmarks/quant_train.py, {epochs} epoch(s) x {steps or 'all'} steps of 128, "
                              f"test top-1 {top1:.2f}%"}
    CACHE.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, path)
    print(f"{name}: test top-1 {top1:.2f}% -> {path}")
    return load_checkpoint(path)


if __name__ == "__main__":
    for n in sys.argv[1:] or list(MODELS):
        trained(n)
