"""The stage interface and its registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from edgekit.data.core import DataSplits
from edgekit.models.loaded import LoadedModel
from edgekit.registry import Registry
from edgekit.target import Target


@dataclass
class StageContext:
    model: LoadedModel                 # the current model (output of the previous stage)
    teacher: LoadedModel               # the input model, untouched (distillation's default teacher)
    data: DataSplits
    target: Target
    work_dir: Path                     # per-stage scratch dir (checkpoints for --resume)
    seed: int = 0
    resume: bool = False
    # Where training/evaluation run (training.device.using_device is set to it around each stage); models
    # come in and go out on the CPU.
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass
class StageResult:
    model: LoadedModel
    metrics: dict[str, Any] = field(default_factory=dict)
    changed_model: bool = True          # False for read-only stages (evaluate)


class Stage:
    """Subclass, set ``Params`` (a pydantic model) and implement ``run``."""

    name: ClassVar[str]
    # Whether the stage reads the train split (trains, or calibrates on it). A recipe whose stages all say no
    # evaluates a flat image folder of the model's own classes on every image (pipeline/phases.py).
    uses_train_split: ClassVar[bool] = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, params: BaseModel):
        self.params = params

    def run(self, ctx: StageContext) -> StageResult:
        raise NotImplementedError


STAGES: Registry[type[Stage]] = Registry("stage")


register_stage = STAGES.register_class
