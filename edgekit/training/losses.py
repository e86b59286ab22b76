"""Distillation objectives, shared by the distill, prune-recovery and bottleneck stages.

- ``kd_objective``: Hinton KD (soft targets at temperature T, mixed with hard labels by alpha);
  alpha=1 needs no labels at all (soft-label-only distillation on unlabeled images).
- ``function_matching_objective``: "a good teacher is patient and consistent" (Beyer et al., 2022):
  teacher and student see the *same* mixup-ed (and augmented) view; KL only, no labels.
- ``FeatureMatch``: match a student feature map to a teacher's through a 1x1 conv adapter (MSE),
  with forward hooks on modules named by path (torchdistill-style), reusable by split computing.

Teacher and student may expect different inputs (size, channels, normalisation): ``teacher_input``
maps the student's model-ready batch to the teacher's, so both always see the same view.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at temperature T, scaled by T^2 (Hinton et al., 2015)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits.float() / t, dim=1), F.softmax(teacher_logits.float() / t, dim=1),
                    reduction="batchmean") * (t * t)


def kd_objective(teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9,
                 teacher_input: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """Objective for ``train``: alpha * KD + (1 - alpha) * CE. The teacher sees the same input."""
    teacher.eval().requires_grad_(False)
    to_teacher = teacher_input or (lambda x: x)

    def objective(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher(to_teacher(inputs))
        student_logits = model(inputs)
        return distillation_loss(student_logits, teacher_logits, labels, temperature, alpha)

    return objective


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                      temperature: float, alpha: float) -> torch.Tensor:
    """alpha * KD + (1 - alpha) * CE; with alpha == 1 the labels are never read (may be None or -1)."""
    loss = alpha * kd_loss(student_logits, teacher_logits, temperature)
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student_logits.float(), labels)
    return loss


def mixup(x: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-batch mixup of inputs only (no labels: the teacher labels the mixed image).
    lambda ~ Beta(alpha, alpha) from the global torch RNG (seeded by ``train``)."""
    if alpha <= 0:
        return x
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return lam * x + (1 - lam) * x[perm]


def function_matching_objective(teacher: nn.Module, temperature: float = 1.0, mixup_alpha: float = 1.0,
                                teacher_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
                                generator: torch.Generator | None = None):
    """Function matching: KL(teacher || student) on the same mixup-ed view; labels are ignored."""
    teacher.eval().requires_grad_(False)
    to_teacher = teacher_input or (lambda x: x)

    def objective(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mixed = mixup(inputs, mixup_alpha, generator)
        with torch.no_grad():
            teacher_logits = teacher(to_teacher(mixed))
        return kd_loss(model(mixed), teacher_logits, temperature)

    return objective


class FeatureCapture:
    """Records the output of a named submodule on every forward (a forward hook)."""

    def __init__(self, model: nn.Module, module_path: str):
        self.value: torch.Tensor | None = None
        self._handle = model.get_submodule(module_path).register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.value = output

    def remove(self) -> None:
        self._handle.remove()


class FeatureMatch(nn.Module):
    """MSE between a student feature map (through a 1x1 conv adapter) and the teacher's at a layer.

    The adapter is trainable (pass ``feature_match`` as ``extra_modules`` to ``train``); when
    channel counts already agree it can be disabled with ``adapter=False``.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, student_layer: str, teacher_layer: str,
                 student_channels: int, teacher_channels: int, adapter: bool = True):
        super().__init__()
        self.student_capture = FeatureCapture(student, student_layer)
        self.teacher_capture = FeatureCapture(teacher, teacher_layer)
        self.adapter = (nn.Conv2d(student_channels, teacher_channels, 1, bias=False)
                        if adapter or student_channels != teacher_channels else nn.Identity())

    def loss(self) -> torch.Tensor:
        s, t = self.student_capture.value, self.teacher_capture.value
        if s is None or t is None:
            raise RuntimeError("FeatureMatch.loss() called before a forward pass of student and teacher")
        s = self.adapter(s.float())
        if s.shape[-2:] != t.shape[-2:]:
            s = F.interpolate(s, size=t.shape[-2:], mode="bilinear", align_corners=False)
        return F.mse_loss(s, t.float().detach())

    def remove(self) -> None:
        self.student_capture.remove()
        self.teacher_capture.remove()


def feature_distill_objective(student_features, teacher_features):
    """Objective for ``train``: MSE between ``student_features(model, x)`` and ``teacher_features(x)``.

    BottleFit's head distillation (stage 1): the student's encoder+decoder reproduce the teacher's
    feature map at the split point; the rest of the student is not run, so it stays untouched.
    """

    def objective(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = teacher_features(inputs)
        return F.mse_loss(student_features(model, inputs).float(), target.float())

    return objective
