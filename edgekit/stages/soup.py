"""``soup``: model soups (Wortsman et al. 2022): average the weights of several fine-tuned runs of
one model, for accuracy at no inference cost.

Ingredients are N fine-tunes of the current model (varying the seed, the learning rate and/or
augmentation, as asked) or N checkpoints given as model ``sources``; all must be one architecture
(same state-dict keys and shapes: checked). ``uniform`` averages all of them; ``greedy`` sorts them
by val top-1 and adds one only if the soup's val top-1 does not drop, so the greedy soup is never
below its best ingredient on val (it starts as that ingredient). Models with BatchNorm get their
running statistics recomputed after averaging (one pass over training data), because averaged
weights do not match averaged statistics; the metrics say so.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field, model_validator

from edgekit import ui
from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.models.sources import load_model
from edgekit.stages.base import Stage, StageContext, StageResult, register_stage
from edgekit.training import TrainParams, batchnorm, evaluate_module, train


class SoupParams(TrainParams):
    ingredients: int | None = Field(None, ge=2, le=32, description="fine-tunes of the current model [default: 3; "
                                    "with sources: their number]")
    vary: list[Literal["seed", "lr", "augment"]] = Field(default_factory=lambda: ["seed"],
                                                           description="what differs between fine-tunes")
    mode: Literal["uniform", "greedy"] = "greedy"
    sources: list[str] | None = Field(None, description="take these checkpoints (model sources) as the ingredients "
                                      "instead of fine-tuning")
    bn_batches: int | None = Field(None, ge=1, description="training batches for the BatchNorm statistics "
                                   "pass after averaging [default: one epoch]")

    @model_validator(mode="after")
    def _count(self) -> "SoupParams":
        if self.sources is not None:
            if len(self.sources) < 2:
                raise ValueError("a soup needs at least 2 sources")
            if self.ingredients not in (None, len(self.sources)):
                raise ValueError(f"ingredients ({self.ingredients}) differs from the number of sources "
                                 f"({len(self.sources)})")
        return self


def lr_factor(i: int) -> float:
    """Learning-rate spread of fine-tune ``i``: 1, 1/sqrt2, sqrt2, 1/2, 2, ..."""
    return 2 ** ((-1) ** i * math.ceil(i / 2) / 2) if i else 1.0


def check_same_architecture(states: list[dict[str, torch.Tensor]], names: list[str]) -> None:
    ref = {k: tuple(v.shape) for k, v in states[0].items()}
    for state, name in zip(states[1:], names[1:]):
        other = {k: tuple(v.shape) for k, v in state.items()}
        if other != ref:
            diff = sorted(set(ref) ^ set(other)) or [k for k in ref if ref[k] != other[k]]
            raise EdgekitError(f"soup: {name} is not the same architecture as {names[0]} (differs at {diff[0]}); "
                               "a soup averages models of one architecture")


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Uniform weight average; integer buffers (BatchNorm's num_batches_tracked) come from the first."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = torch.stack([s[key].float() for s in states]).mean(0).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


@register_stage("soup")
class Soup(Stage):
    Params = SoupParams

    def run(self, ctx: StageContext) -> StageResult:
        p: SoupParams = self.params
        ingredients = self._from_sources(ctx) if p.sources else self._fine_tunes(ctx)
        names = [name for name, _ in ingredients]
        states = [m.module.state_dict() for _, m in ingredients]
        check_same_architecture(states, names)
        base = copy.deepcopy(ingredients[0][1])
        spec, data = base.spec, ctx.data
        bn = batchnorm.has_batchnorm(base.module)

        def val(module):
            return evaluate_module(module, spec, data.val)["top1"]

        rows = []
        for (name, m), state in zip(ingredients, states):
            rows.append({"ingredient": name, "val_top1": val(m.module),
                         "test_top1": evaluate_module(m.module, spec, data.test)["top1"]})
        bn_images = 0

        def cook(indices: list[int]) -> nn.Module:
            nonlocal bn_images
            module = copy.deepcopy(base.module)
            module.load_state_dict(average_states([states[i] for i in indices]))
            if bn and len(indices) > 1:
                bn_images = batchnorm.recalibrate(module, spec, data.train, p.bn_batches, ctx.seed)
            return module.eval()

        if p.mode == "uniform":
            chosen = list(range(len(states)))
            soup = cook(chosen)
            soup_val = val(soup)
        else:
            order = sorted(range(len(rows)), key=lambda i: -rows[i]["val_top1"])
            chosen, soup, soup_val = [order[0]], ingredients[order[0]][1].module, rows[order[0]]["val_top1"]
            for i in order[1:]:
                candidate = cook(chosen + [i])
                candidate_val = val(candidate)
                ui.info(f"  soup: + {names[i]} -> val top-1 {candidate_val:.2f}% (soup so far {soup_val:.2f}%)")
                if candidate_val >= soup_val:
                    chosen, soup, soup_val = chosen + [i], candidate, candidate_val
        base.module = copy.deepcopy(soup).eval()
        base.notes["soup"] = f"{p.mode} soup of {len(chosen)}/{len(states)} ingredients"
        metrics = {"mode": p.mode, "ingredients": rows, "chosen": [names[i] for i in chosen],
                   "soup_val_top1": soup_val, "soup_test_top1": evaluate_module(base.module, spec, data.test)["top1"],
                   "vary": None if p.sources else p.vary,
                   "batchnorm": ("running statistics recomputed after averaging over "
                                 f"{bn_images} training images" if bn and len(chosen) > 1 else
                                 "no averaging of BatchNorm statistics needed" if bn else "no BatchNorm")}
        return StageResult(base, metrics)

    def _from_sources(self, ctx: StageContext) -> list[tuple[str, LoadedModel]]:
        out = []
        for source in self.params.sources:
            model = load_model(source)
            if model.spec.num_classes != ctx.data.num_classes:
                raise EdgekitError(f"soup: {source} has {model.spec.num_classes} outputs but the data has "
                                   f"{ctx.data.num_classes} classes")
            out.append((source, model))
        return out

    def _fine_tunes(self, ctx: StageContext) -> list[tuple[str, LoadedModel]]:
        p = self.params
        train_fields = set(TrainParams.model_fields)
        base = TrainParams(**p.model_dump(include=train_fields))
        out = []
        for i in range(p.ingredients or 3):
            update, label = {}, []
            if "seed" in p.vary:
                update["seed"] = base.seed + i
                label.append(f"seed {update['seed']}")
            if "lr" in p.vary:
                update["lr"] = base.lr * lr_factor(i)
                label.append(f"lr {update['lr']:.3g}")
            if "augment" in p.vary:
                update["augment"] = base.augment if i % 2 == 0 else not base.augment
                label.append(f"augment {'on' if update['augment'] else 'off'}")
            params = base.model_copy(update=update)
            model = copy.deepcopy(ctx.model)
            name = f"fine-tune {i + 1} ({', '.join(label) or 'same settings'})"
            ui.info(f"  soup: {name}")
            train(model.module, model.spec, ctx.data, params, description=f"soup {i + 1}",
                  checkpoint_dir=ctx.work_dir / f"ingredient{i}", resume=ctx.resume)
            out.append((name, model))
        return out
