"""``evaluate``: accuracy of the current PyTorch model on a split (read-only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from edgekit.stages.base import Stage, StageContext, StageResult, register_stage
from edgekit.training import evaluate_module


@register_stage("evaluate")
class Evaluate(Stage):
    uses_train_split = False   # read-only: a split of val or test
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        split: Literal["val", "test"] = "test"
        limit: int | None = None

    def run(self, ctx: StageContext) -> StageResult:
        ds = getattr(ctx.data, self.params.split)
        metrics = evaluate_module(ctx.model.module, ctx.model.spec, ds, limit=self.params.limit)
        return StageResult(ctx.model, {"split": self.params.split, **metrics}, changed_model=False)
