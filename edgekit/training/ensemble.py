"""Several teachers as one: the weighted average of their softened class probabilities.

Why probabilities and not logits: each teacher's logits live on its own scale (an offset or a
temperature-like scale factor changes nothing about its predictions but would dominate a logit
average), while probabilities are comparable across models and their mixture is the ensemble's
predictive distribution (MEAL V2, SSLD average soft labels). The ensemble returns
``T * log(sum_i w_i softmax(z_i / T))``: pseudo-logits whose softmax at temperature ``T`` is exactly
that mixture, so every KD loss, the teacher-logit cache and evaluation (argmax) work unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from edgekit.spec import ModelSpec
from edgekit.training.distill import input_converter


class EnsembleTeacher(nn.Module):
    """Takes the *student's* model-ready view and feeds each teacher its own (converted) input."""

    def __init__(self, teachers: list[nn.Module], specs: list[ModelSpec], student_spec: ModelSpec,
                 weights: list[float] | None, temperature: float):
        super().__init__()
        self.teachers = nn.ModuleList(teachers)
        self.converters = [input_converter(student_spec, s) or (lambda x: x) for s in specs]
        w = torch.tensor(weights if weights is not None else [1.0] * len(teachers), dtype=torch.float64)
        self.log_weights = (w / w.sum()).log().float().tolist()
        self.temperature = temperature

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        logs = [lw + torch.log_softmax(teacher(convert(x)).float() / t, dim=1)
                for lw, teacher, convert in zip(self.log_weights, self.teachers, self.converters) if lw > -math.inf]
        return t * torch.logsumexp(torch.stack(logs), dim=0)
