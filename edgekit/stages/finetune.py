"""``finetune``: plain supervised training (cross-entropy) of the current model."""

from __future__ import annotations

from edgekit.stages.base import Stage, StageContext, StageResult, register_stage
from edgekit.training import TrainParams, train


@register_stage("finetune")
class Finetune(Stage):
    Params = TrainParams

    def run(self, ctx: StageContext) -> StageResult:
        report = train(ctx.model.module, ctx.model.spec, ctx.data, self.params, description="finetune",
                       checkpoint_dir=ctx.work_dir, resume=ctx.resume)
        ctx.model.notes.pop("head", None)  # a replaced head is trained now
        return StageResult(ctx.model, report.model_dump())
