"""Robustness of the input model, the final model and every compiled artifact: top-1 under
adversarial perturbations (FGSM, PGD: L-inf, in [0, 1]-pixel units; Carlini-Wagner: L2, unbounded,
with its mean distortion) and common corruptions (Gaussian noise, blur, brightness, contrast, JPEG;
3 severities).

Perturbations are crafted in pixel space on a PyTorch model *through its ModelSpec's
preprocessing* (``spec.prepare`` is differentiable), so eps means the same thing for every model
and the crafted images stay valid pixels. The input and final models are attacked white-box; the
artifacts (not differentiable) get the images crafted on the final PyTorch model, fed through
their own runtime session: those rows are labelled ``transfer``. Corrupted images are the same
for every model (seeded).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from edgekit import ui
from edgekit.backends.base import BACKENDS, Artifact
from edgekit.data.core import make_loader
from edgekit.models.loaded import LoadedModel
from edgekit.recipe import RobustnessSettings
from edgekit.spec import ModelSpec

# Severity 1..3 of each corruption (ImageNet-C-like, milder steps for small images).
SEVERITY = {
    "gaussian_noise": (0.04, 0.08, 0.16),   # sigma
    "blur": (0.5, 1.0, 1.5),                # Gaussian sigma, pixels
    "brightness": (0.1, 0.2, 0.3),          # added to every pixel
    "contrast": (0.6, 0.4, 0.2),            # factor towards each image's mean
    "jpeg": (40, 20, 10),                   # JPEG quality
}

Predict = Callable[[torch.Tensor], np.ndarray]   # [0, 1] pixels (N, C, H, W) -> logits


def pixel_images(ds: Dataset, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` images of ``ds`` as float [0, 1] (N, C, H, W) and their labels."""
    xs, ys, seen = [], [], 0
    for images, labels in make_loader(ds, 256):
        xs.append(images.float() / 255.0 if images.dtype == torch.uint8 else images.float())
        ys.append(labels)
        seen += len(labels)
        if limit is not None and seen >= limit:
            break
    x, y = torch.cat(xs), torch.cat(ys)
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


def fgsm(module: nn.Module, spec: ModelSpec, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Goodfellow et al.: one signed-gradient step of size eps, clipped to valid pixels."""
    if eps == 0:
        return x
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(module(spec.prepare(x)).float(), y)
    grad, = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def pgd(module: nn.Module, spec: ModelSpec, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
        generator: torch.Generator) -> torch.Tensor:
    """Madry et al.: random start in the eps-ball, ``steps`` signed steps of 2.5 eps / steps, each
    projected back onto the eps-ball and the valid pixel range."""
    if eps == 0:
        return x
    alpha = 2.5 * eps / steps
    adv = (x + torch.empty_like(x).uniform_(-eps, eps, generator=generator)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(module(spec.prepare(adv)).float(), y)
        grad, = torch.autograd.grad(loss, adv)
        adv = torch.min(torch.max(adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def carlini_wagner(module: nn.Module, spec: ModelSpec, x: torch.Tensor, y: torch.Tensor, steps: int, c: float,
                   search_steps: int, lr: float, kappa: float = 0.0) -> torch.Tensor:
    """Carlini & Wagner's L2 attack (2017): the smallest L2 change that flips the label, found by Adam on
    ``||adv - x||² + c·f(adv)`` in tanh space (so every iterate is a valid [0, 1] pixel image, with no
    clipping), with the margin loss f = max(Z_y - max_{i≠y} Z_i, -kappa) on the logits, and a per-image
    binary search over c (``search_steps`` rounds, starting at ``c``: ×10 until an image is fooled, then
    bisection). Returns, per image, the adversarial image of least L2 found, or the clean image where
    none was (so top-1 on the result is the accuracy under attack).

    Written here rather than taken from a library: torchattacks' CW (unreleased since 2023) runs one fixed c
    with no search, and adversarial-robustness-toolbox pulls scikit-learn, scipy and more for ~50 lines.
    The defaults (few steps, larger Adam step than the paper's 1e-2 over 10k steps) keep it to seconds on
    a CPU; with few steps it finds an upper bound on the minimal distortion, as every CW run does."""
    module.eval()
    n = len(y)
    x = x.detach()
    w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    lo, hi = torch.zeros(n), torch.full((n,), float("inf"))
    cs = torch.full((n,), float(c))
    best_l2 = torch.full((n,), float("inf"))
    best = x.clone()
    if n == 0:
        return best
    onehot: torch.Tensor | None = None
    for _ in range(search_steps):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        fooled = torch.zeros(n, dtype=torch.bool)
        for _ in range(steps):
            adv = (torch.tanh(w) + 1) / 2
            logits = module(spec.prepare(adv)).float()
            if onehot is None:
                onehot = F.one_hot(y, num_classes=logits.shape[1]).bool()
            real = logits[onehot]
            other = logits.masked_fill(onehot, float("-inf")).max(1).values
            margin = (real - other).clamp(min=-kappa)
            l2 = ((adv - x) ** 2).flatten(1).sum(1)
            loss = (l2 + cs * margin).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():   # the iterate just scored: keep it when it fools the model closer than before
                wrong = real < other
                better = wrong & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                best[better] = adv.detach()[better]
                fooled |= wrong
        hi = torch.where(fooled, torch.minimum(hi, cs), hi)
        lo = torch.where(fooled, lo, torch.maximum(lo, cs))
        cs = torch.where(torch.isinf(hi), cs * 10, (lo + hi) / 2)
    return best.detach()


def l2_distortion(x: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """Per-image L2 distance in [0, 1] pixels."""
    return (adv - x).flatten(1).norm(dim=1)


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """``x`` ([0, 1] pixels) under one corruption at severity 1..3; deterministic for a seed."""
    level = SEVERITY[name][severity - 1]
    if name == "gaussian_noise":
        g = torch.Generator().manual_seed(seed + severity)
        return (x + level * torch.randn(x.shape, generator=g)).clamp(0, 1)
    if name == "blur":
        from torchvision.transforms.functional import gaussian_blur

        size = min(2 * int(np.ceil(2 * level)) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
        return gaussian_blur(x, [size, size], [level, level]).clamp(0, 1)
    if name == "brightness":
        return (x + level).clamp(0, 1)
    if name == "contrast":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * level + mean).clamp(0, 1)
    if name == "jpeg":
        return _jpeg(x, int(level))
    raise ValueError(f"unknown corruption {name}")


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    out = []
    for img in (x * 255).round().to(torch.uint8).numpy():
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        buf = io.BytesIO()
        Image.fromarray(arr, mode="L" if img.shape[0] == 1 else "RGB").save(buf, format="JPEG", quality=quality)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.uint8)
        out.append(dec[None] if dec.ndim == 2 else dec.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out)).float() / 255.0


def top1(predict: Predict, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((predict(x[i:i + batch]).argmax(1) == y[i:i + batch].numpy()).sum())
    return round(100.0 * correct / max(len(y), 1), 2)


def torch_predict(module: nn.Module, spec: ModelSpec) -> Predict:
    module.eval()

    def predict(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(spec.prepare(x)).float().numpy()

    return predict


def crafted(module: nn.Module, spec: ModelSpec, x: torch.Tensor, y: torch.Tensor,
            settings: RobustnessSettings, label: str) -> dict[str, list[torch.Tensor]]:
    """{attack: [adversarial images per eps]} crafted white-box on ``module``, batch by batch (PGD on the
    10k test split takes minutes on a CPU: a progress bar per model). CW has no eps: one set of images."""
    module.eval()
    g = torch.Generator().manual_seed(settings.seed)
    out: dict[str, list[torch.Tensor]] = {}
    batches = range(0, len(y), settings.batch)
    rounds = sum(1 if a == "cw" else len(settings.eps) for a in settings.attacks) * len(batches)
    with ui.progress(f"robustness: attacking the {label}", rounds) as bar:
        for attack in settings.attacks:
            per_eps = []
            for eps in ([None] if attack == "cw" else settings.eps):
                parts = []
                for i in batches:
                    xb, yb = x[i:i + settings.batch], y[i:i + settings.batch]
                    if attack == "cw":
                        parts.append(carlini_wagner(module, spec, xb, yb, settings.cw_steps, settings.cw_c,
                                                    settings.cw_search_steps, settings.cw_lr))
                    elif attack == "fgsm":
                        parts.append(fgsm(module, spec, xb, yb, eps))
                    else:
                        parts.append(pgd(module, spec, xb, yb, eps, settings.pgd_steps, g))
                    bar.advance()
                per_eps.append(torch.cat(parts))
            out[attack] = per_eps
    return out


def cw_summary(predict: Predict, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, batch: int) -> dict:
    """CW's figures for one model: success rate (% of the images it classified correctly that the adversarial
    images make it misclassify) and the mean / median L2 distortion of those successes ([0, 1] pixels)."""
    def labels(images: torch.Tensor) -> np.ndarray:
        return np.concatenate([predict(images[i:i + batch]).argmax(1) for i in range(0, len(y), batch)]) \
            if len(y) else np.zeros(0, dtype=np.int64)

    truth = y.numpy()
    correct = labels(x) == truth
    fooled = correct & (labels(adv) != truth)
    dist = l2_distortion(x, adv).numpy()[fooled]
    return {"success_rate": round(100.0 * fooled.sum() / max(int(correct.sum()), 1), 2),
            "mean_l2": round(float(dist.mean()), 4) if len(dist) else None,
            "median_l2": round(float(np.median(dist)), 4) if len(dist) else None}


def evaluate(predict: Predict, x: torch.Tensor, y: torch.Tensor, adversarial: dict[str, list[torch.Tensor]],
             corrupted: dict[str, list[torch.Tensor]], batch: int) -> dict:
    """Top-1 (%) of one model on clean, adversarial and corrupted images."""
    out = {"clean": top1(predict, x, y, batch),
           "attacks": {a: [top1(predict, adv, y, batch) for adv in advs] for a, advs in adversarial.items()},
           "corruptions": {c: [top1(predict, img, y, batch) for img in imgs] for c, imgs in corrupted.items()}}
    if "cw" in adversarial:
        out["cw"] = cw_summary(predict, x, y, adversarial["cw"][0], batch)
    return out


def robustness_section(input_model: LoadedModel | None, final_model: LoadedModel, artifacts: list[Artifact],
                       bundle_root: Path, data_test: Dataset, settings: RobustnessSettings,
                       threads: int) -> dict:
    """The manifest's ``robustness`` section: input model vs final model vs each artifact."""
    x, y = pixel_images(data_test, settings.limit)
    corrupted = {c: [corrupt(x, c, s, settings.seed) for s in settings.severities] for c in settings.corruptions}
    rows = []
    final_adv = crafted(final_model.module, final_model.spec, x, y, settings, "final model")
    if input_model is not None:
        adv = crafted(input_model.module, input_model.spec, x, y, settings, "input model")
        rows.append({"model": "input model", "kind": "pytorch", "attack": "white-box",
                     **evaluate(torch_predict(input_model.module, input_model.spec), x, y, adv, corrupted,
                                settings.batch)})
    rows.append({"model": "final model", "kind": "pytorch", "attack": "white-box",
                 **evaluate(torch_predict(final_model.module, final_model.spec), x, y, final_adv, corrupted,
                            settings.batch)})
    skipped = []
    for artifact in artifacts:
        if not artifact.runnable_here or artifact.meta.get("split_part"):
            skipped.append({"artifact": artifact.name, "reason": "split part" if artifact.meta.get("split_part")
                            else "not runnable on this host"})
            continue
        session = BACKENDS.get(artifact.backend)().load(artifact, bundle_root, threads)
        try:
            spec = final_model.spec

            def predict(xb: torch.Tensor, session=session) -> np.ndarray:
                return session.predict(spec.prepare(xb).numpy(), batch_size=len(xb))   # within the file's batch

            rows.append({"model": artifact.name, "kind": "artifact", "attack": "transfer (crafted on the final "
                         "PyTorch model)", **evaluate(predict, x, y, final_adv, corrupted, settings.batch)})
        finally:
            session.close()
    cw = ({"cw": {"steps": settings.cw_steps, "c": settings.cw_c, "search_steps": settings.cw_search_steps,
                  "lr": settings.cw_lr}} if "cw" in settings.attacks else {})
    return {"samples": int(len(y)), "eps": settings.eps, "attacks": settings.attacks, "pgd_steps": settings.pgd_steps,
            **cw,
            "corruptions": settings.corruptions, "severities": settings.severities,
            "severity_levels": {c: list(SEVERITY[c]) for c in settings.corruptions},
            "models": rows, "skipped": skipped}
