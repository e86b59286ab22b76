"""Stages: ``nn.Module`` in, ``nn.Module`` out, plus what was measured. One module per stage,
registered by name with ``@register_stage``; a stage never compiles and never profiles."""

from edgekit.stages.base import STAGES, Stage, StageContext, StageResult, register_stage

# Importing registers them. A new stage is one new module plus one name here.
from edgekit.stages import bottleneck, distill, evaluate, finetune, lowrank, prune, quantize, soup  # noqa: F401,E402

__all__ = ["STAGES", "Stage", "StageContext", "StageResult", "register_stage"]
