"""Cached Fashion-MNIST teachers for the shrink benchmarks (trained once, reused by reruns)."""

from __future__ import annotations

from pathlib import Path

from edgekit import ui
from edgekit.data import load_data
from edgekit.models import load_model, save_checkpoint
from edgekit.training import TrainParams, evaluate_module, train

CACHE = Path(__file__).resolve().parent / "cache"


# The ResNet-18 teacher of the shrink and quantization benchmarks: builtin:resnet18_28, the ResNet-18 layout
# at quarter width with a CIFAR-style stem (0.7M params, 29 MMACs at 28 px), 3 full epochs in fp32 (~7 min
# per epoch at 1 thread on the AVX2 EPYC; half width, 114 MMACs, took 28 min per epoch there). Until
# 2026-11-24 this was builtin:resnet18_32 (557 MMACs: ~30 min on an AVX512-BF16 host, ~2.5 h on the AVX2
# one); torchvision's ResNet-18 at 32 px reached only 80.3% after 2 epochs (its stride-4 stem leaves 8x8
# feature maps).
RESNET18 = ("builtin:resnet18_28", 3)


def teacher_checkpoint(model: str = "builtin:resnet8", epochs: int = 2, steps: int | None = 150,
                       fast: bool = False, seed: int = 0, patience: int | None = None, min_epochs: int = 0) -> Path:
    """Train ``model`` on Fashion-MNIST for ``epochs`` x ``steps`` batches of 128 (cosine LR, crop+flip)
    unless cached; ``steps=None`` means full epochs and ``fast`` trains in bf16 autocast, channels_last
    (about 2x faster on CPUs with AVX512-BF16; fp32 where the CPU has no native bf16). ``patience``: train until
    the validation accuracy (the full val split) has not risen for that many epochs, ``epochs`` at most, and
    keep the best epoch: a converged teacher, as users bring one, rather than a fixed few epochs. ``min_epochs``:
    no early stop before then (a dip at a still-high learning rate is not a plateau).

    Reproducible: the random init and the training are seeded with ``seed`` (``seeded_model``; before issue 39
    the init was unseeded, and two runs of one command trained teachers 3.2 points apart) and the training runs
    at this host's thread count, so the file is named for the seed and the machine kind (CPU model, generation
    and cores: ``Host.slug``): cached once for each, reused by every run on a machine of that kind."""
    from benchmarks.schema import Host
    from edgekit.training.reproducible import seeded_model

    name = model.replace(":", "_").replace("?", "_").replace("=", "-")
    until = (f"-p{patience}" + (f"m{min_epochs}" if min_epochs else "")) if patience else ""
    path = CACHE / f"teacher-{name}-fmnist-e{epochs}x{steps or 'full'}{until}-seed{seed}-{Host.here().slug}.pt"
    if path.exists():
        return path
    data = load_data("fashion-mnist", image_size=load_model(model, num_classes=10).spec.hw)
    loaded = seeded_model(model, num_classes=10, seed=seed)
    ui.info(f"training teacher {model} on Fashion-MNIST, seed {seed}, "
            + (f"for its whole {epochs}-epoch schedule, keeping its best epoch" if patience and min_epochs >= epochs
               else f"until val stops rising ({patience} epochs, not before epoch {min_epochs}), at most {epochs} "
               "epochs" if patience else f"for {epochs} epochs") + f" (cached at {path})")
    report = train(loaded.module, loaded.spec, data, TrainParams(epochs=epochs, lr=0.1, warmup_epochs=0.3,
                                                                 max_steps_per_epoch=steps, seed=seed,
                                                                 patience=patience, min_epochs=min_epochs,
                                                                 eval_limit=None if patience else 2000,
                                                                 bf16=fast, channels_last=fast), description="teacher",
                   checkpoint_dir=CACHE / f"work-{path.stem}", resume=True)
    top1 = evaluate_module(loaded.module, loaded.spec, data.test)["top1"]
    loaded.notes = {"weights": f"benchmark teacher, seed {seed}, {report.epochs_run} epochs (kept epoch "
                               f"{report.kept_epoch}), test top-1 {top1:.2f}%",
                    "train_seconds": str(report.seconds), "train_threads": str(report.threads),
                    "epochs_run": str(report.epochs_run), "stopped_early": str(report.stopped_early)}
    save_checkpoint(loaded, path)
    return path


def resnet18_teacher() -> Path:
    """The shared ResNet-18 teacher (``RESNET18``: full epochs, bf16 where the CPU has it), trained once."""
    return teacher_checkpoint(*RESNET18, steps=None, fast=True)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["resnet18"]:
        print(resnet18_teacher())
    else:
        print(teacher_checkpoint(*sys.argv[1:2]))
