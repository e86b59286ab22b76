"""``distill``: knowledge distillation from a teacher into a student, through the shared training loop.

- teacher: the pipeline's input model (default) or any model source, or a list of them (an ensemble:
  soft targets are the weighted average of the teachers' probabilities at temperature T, see
  ``edgekit.training.ensemble``; ``input`` in the list names the pipeline's input model);
- ``defensive: true``: defensive distillation (Papernot et al. 2016): trained at temperature T
  (default 20) on the teacher's soft labels only, deployed at T = 1 (the module's plain logits);
- student: ``self`` (the current model, e.g. just pruned: "prune, then distill to recover") or a model
  source (``builtin:...``, ``torchvision:...?weights=none``, ``timm:...``) trained from its init;
- loss ``kd`` (Hinton: alpha * KD + (1 - alpha) * CE), ``soft`` (KD only: labels are never read, so
  unlabeled images work) or ``function_matching`` (same mixup-ed, augmented view for both; KL only);
- optional feature distillation: a student layer matched to a teacher layer through a 1x1 adapter.

Teacher logits are computed once and cached when the student's inputs are deterministic
(augmentation off, no mixup, no feature matching); otherwise on the fly. The metrics say which.
Under ``torchrun`` the loop runs DistributedDataParallel (see ``edgekit.training.distributed``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from edgekit import ui
from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.models.sources import load_model
from edgekit.stages.base import Stage, StageContext, StageResult, register_stage
from edgekit.training import TrainParams, evaluate_module, train
from edgekit.training.device import channels_last, current_device, on_device
from edgekit.training.ensemble import EnsembleTeacher
from edgekit.training.distill import (SessionTeacher, inference_teacher, input_converter, teacher_logits,
                                      with_indexed_train)
from edgekit.training.losses import FeatureMatch, distillation_loss, function_matching_objective, kd_objective
from edgekit.training.loop import bf16_blocker, uses_channels_last


class DistillParams(TrainParams):
    teacher: str | list[str] | None = Field(None, description="model source of the teacher, or a list of them "
                                            "(an ensemble; 'input' = the input model) [default: the input model]")
    teacher_weights: list[float] | None = Field(None, description="ensemble: weight of each teacher [default: equal]")
    defensive: bool = Field(False, description="defensive distillation: soft labels only at temperature T "
                            "(default 20), deployed at T = 1")
    student: str = Field("self", description="'self' (the current model) or a model source")
    student_input_size: tuple[int, int] | None = Field(None, description="H, W for a student source")
    loss: Literal["kd", "soft", "function_matching"] = "kd"
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1, description="kd: weight of the KD term (1 - alpha on labels)")
    mixup_alpha: float = Field(1.0, ge=0, description="function_matching: Beta(a, a) mixup")
    student_layer: str | None = None
    teacher_layer: str | None = None
    feature_weight: float = Field(1.0, ge=0)
    cache_teacher: bool = Field(True, description="cache teacher logits when inputs are deterministic")

    @model_validator(mode="after")
    def _layers_together(self) -> "DistillParams":
        if (self.student_layer is None) != (self.teacher_layer is None):
            raise ValueError("feature distillation needs both student_layer and teacher_layer")
        n = len(self.teacher) if isinstance(self.teacher, list) else 1
        if self.teacher_weights is not None and (n < 2 or len(self.teacher_weights) != n
                                                 or min(self.teacher_weights) < 0 or sum(self.teacher_weights) <= 0):
            raise ValueError("teacher_weights needs one non-negative weight per teacher of a teacher list")
        if isinstance(self.teacher, list) and (n < 1 or self.student_layer is not None):
            raise ValueError("a teacher list needs at least one source and no feature distillation")
        if self.defensive:
            if self.loss == "function_matching":
                raise ValueError("defensive distillation trains on soft labels (loss kd or soft), not function_matching")
            self.loss = "soft"  # soft labels only: the labels are never read
            if "temperature" not in self.model_fields_set:
                self.temperature = 20.0
        return self


@register_stage("distill")
class Distill(Stage):
    Params = DistillParams

    def run(self, ctx: StageContext) -> StageResult:
        p: DistillParams = self.params
        student = self._student(ctx)
        teacher = self._teacher(ctx, student)
        teacher.module.eval().requires_grad_(False)
        s_mod = student.module
        convert = input_converter(student.spec, teacher.spec)
        feature = self._feature_match(student, teacher) if p.student_layer else None
        deterministic = not p.augment and p.loss != "function_matching" and feature is None
        # A faster teacher pays on every training batch; a logits cache runs the teacher once, and feature
        # distillation hooks a teacher layer by name (which neither OpenVINO nor folding would keep).
        on_the_fly = not (deterministic and p.cache_teacher)
        t_mod, teacher_runtime = (inference_teacher(teacher.module, teacher.spec, teacher.source,
                                                    p.bf16 and bf16_blocker(p, s_mod) is None, ctx.work_dir)
                                  if on_the_fly and feature is None else (teacher.module, "torch"))
        data = ctx.data
        if p.loss == "function_matching":
            objective = function_matching_objective(t_mod, p.temperature, p.mixup_alpha, convert)
            logits_mode = "on the fly (function matching: mixup-ed views)"
        elif deterministic and p.cache_teacher:
            ui.info("  distill: caching teacher logits (inputs are deterministic: augment off)")
            cached = teacher_logits(t_mod, teacher.spec, data.train, student.spec)
            objective = _cached_objective(cached, p.temperature, 1.0 if p.loss == "soft" else p.alpha)
            data = with_indexed_train(data)
            logits_mode = "cached (augmentation off)"
        else:
            objective = kd_objective(t_mod, p.temperature, 1.0 if p.loss == "soft" else p.alpha, convert)
            logits_mode = ("on the fly (augmentation on)" if p.augment else
                           "on the fly (feature distillation needs teacher features)" if feature else
                           "on the fly (cache_teacher: false)")
        if feature is not None:
            objective = _with_features(objective, feature, p.feature_weight)
        # A teacher of its own is scored on val so the stage's metrics set the student against it; the input model
        # as teacher is not: the input reference already scores it on the test split, and a second pass of a
        # ResNet-18-sized teacher over 2000 val images costs seconds of a run for a number already known.
        teacher_top1 = (None if p.teacher is None else
                        evaluate_module(teacher.module, teacher.spec, ctx.data.val, limit=p.eval_limit)["top1"])
        # the teacher runs where the student trains (the current device), in the student's memory format: a
        # contiguous teacher fed channels_last batches ran its forward 2x slower (ResNet-18, bf16, Zen 5)
        with on_device(t_mod), channels_last(t_mod, uses_channels_last(p, current_device())):
            report = train(s_mod, student.spec, data, p, objective, description="distill",
                           checkpoint_dir=ctx.work_dir, resume=ctx.resume, extra_modules=feature)
        if feature is not None:
            feature.remove()
        if isinstance(t_mod, SessionTeacher):
            t_mod.close()
        student.notes.pop("head", None)
        student.notes["distilled"] = f"{p.loss} from {teacher.source}"
        metrics = {**report.model_dump(), "teacher": teacher.source, "student": student.source,
                   "loss": p.loss, "teacher_logits": logits_mode, "val_top1_teacher": teacher_top1,
                   "teacher_runtime": teacher_runtime,
                   "labels_used": p.loss == "kd" and p.alpha < 1}
        if isinstance(p.teacher, list):
            metrics["teachers"] = teacher.notes["members"]
        if p.defensive:
            student.notes["defensive"] = f"defensive distillation: trained at T={p.temperature:g}, deployed at T=1"
            metrics["defensive"] = {"train_temperature": p.temperature, "deploy_temperature": 1.0}
        return StageResult(student, metrics)

    def _teacher(self, ctx: StageContext, student: LoadedModel) -> LoadedModel:
        p = self.params
        if not isinstance(p.teacher, list):
            return self._one_teacher(ctx, p.teacher)
        members = [self._one_teacher(ctx, None if s == "input" else s) for s in p.teacher]
        for m in members:
            m.module.eval().requires_grad_(False)
        ensemble = EnsembleTeacher([m.module for m in members], [m.spec for m in members], student.spec,
                                   p.teacher_weights, p.temperature)
        weights = p.teacher_weights or [1.0] * len(members)
        # The ensemble takes the student's view (it converts per member), so its spec is the student's.
        return LoadedModel(ensemble, student.spec, source="ensemble[" + ", ".join(m.source for m in members) + "]",
                           arch=None, notes={"members": [{"source": m.source if s == "input" else s, "weight": w}
                                                         for m, s, w in zip(members, p.teacher, weights)]})

    def _one_teacher(self, ctx: StageContext, source: str | None) -> LoadedModel:
        if source is None:
            return ctx.teacher
        teacher = load_model(source)
        if teacher.spec.num_classes != ctx.data.num_classes:
            raise EdgekitError(f"distill: teacher {source} has {teacher.spec.num_classes} outputs "
                               f"but the data has {ctx.data.num_classes} classes",
                               "give a teacher trained on these classes")
        return teacher

    def _student(self, ctx: StageContext) -> LoadedModel:
        p = self.params
        if p.student == "self":
            if p.student_input_size is not None:
                raise EdgekitError("distill: student_input_size applies only to a student model source")
            return ctx.model
        student = load_model(p.student, num_classes=ctx.data.num_classes, input_size=p.student_input_size)
        student.notes.pop("head", None)
        student.spec = student.spec.model_copy(update={"class_names": ctx.model.spec.class_names})
        return student

    def _feature_match(self, student: LoadedModel, teacher: LoadedModel) -> FeatureMatch:
        p = self.params
        for model, layer, role in ((student, p.student_layer, "student"), (teacher, p.teacher_layer, "teacher")):
            try:
                model.module.get_submodule(layer)
            except AttributeError:
                raise EdgekitError(f"distill: {role} has no layer '{layer}'",
                                   "use a module path as shown by `edgekit inspect`") from None
        shapes = {}
        for key, model, layer in (("s", student, p.student_layer), ("t", teacher, p.teacher_layer)):
            handle = model.module.get_submodule(layer).register_forward_hook(
                lambda m, i, o, key=key: shapes.__setitem__(key, o.shape))
            with torch.no_grad():
                model.module.eval()(torch.zeros(1, *model.spec.input_shape))
            handle.remove()
        if len(shapes["s"]) != 4 or len(shapes["t"]) != 4:
            raise EdgekitError("distill: feature distillation needs 4-D (N, C, H, W) feature maps at "
                               f"{p.student_layer} / {p.teacher_layer}")
        return FeatureMatch(student.module, teacher.module, p.student_layer, p.teacher_layer,
                            shapes["s"][1], shapes["t"][1])


def _cached_objective(cached: torch.Tensor, temperature: float, alpha: float):
    """KD against precomputed teacher logits; labels arrive as [label, index] (see IndexedLabels)."""

    def objective(model, inputs, labels):
        return distillation_loss(model(inputs), cached[labels[:, 1]], labels[:, 0], temperature, alpha)

    return objective


def _with_features(objective, feature: FeatureMatch, weight: float):
    """Adds the feature-map MSE; the KD objective's teacher forward fills the teacher capture."""

    def combined(model, inputs, labels):
        loss = objective(model, inputs, labels)
        return loss + weight * feature.loss()

    return combined
