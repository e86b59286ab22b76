"""``bottleneck``: BottleFit-style split computing (Matsubara et al.), in its two training stages.

1. *Head distillation*: the teacher's layers up to the split point are replaced by a small encoder
   (few channels, strided) and a decoder that restores the teacher's feature shape; encoder+decoder
   learn to reproduce the teacher's feature map there (MSE). The tail (the teacher's remaining
   layers) is frozen and not even run.
2. *Fine-tuning* with KD from the teacher, through the calibrated 8-bit transfer quantizer; the
   encoder is frozen (as in the paper; ``freeze_encoder: false`` trains it too).

The result is a ``SplitModel``; the pipeline compiles its head for the device and its tail for the
server (``edgekit.split.deploy``).
"""

from __future__ import annotations

import copy
import math

import torch
from pydantic import BaseModel, ConfigDict, Field

from edgekit import ui
from edgekit.data.core import prepared_batches
from edgekit.models.loaded import LoadedModel
from edgekit.models.complexity import count_macs, count_params
from edgekit.split.model import SplitModel, build_split_model, feature_at, make_config
from edgekit.split.transfer import transfer_sizes
from edgekit.stages.base import Stage, StageContext, StageResult, register_stage
from edgekit.training import TrainParams, evaluate_module, train
from edgekit.training.device import on_device
from edgekit.training.losses import feature_distill_objective, kd_objective


def _stage1_defaults() -> TrainParams:
    return TrainParams(epochs=5, optimizer="adamw", lr=1e-3, weight_decay=0.0, augment=False)


def _stage2_defaults() -> TrainParams:
    return TrainParams(epochs=3, optimizer="adamw", lr=1e-3, weight_decay=0.0, augment=False)


class BottleneckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    split_at: str = Field("auto", description="module path to split after (e.g. layer1), or auto")
    channels: int = Field(4, ge=1, description="bottleneck channels")
    stride: int = Field(2, ge=1, description="bottleneck spatial size = feature map at the split / stride")
    encoder_width: int = Field(32, ge=1)
    decoder_width: int | None = Field(None, ge=1, description="default: 2x the feature channels, 32..256")
    quantize: bool = Field(True, description="8-bit affine per-tensor transfer quantization")
    head_distillation: TrainParams = Field(default_factory=_stage1_defaults)
    finetune: TrainParams = Field(default_factory=_stage2_defaults)
    freeze_encoder: bool = Field(True, description="stage 2 keeps the encoder (and so the quantizer) fixed")
    kd_temperature: float = Field(1.0, gt=0)
    kd_alpha: float = Field(0.5, ge=0, le=1)
    calibration_images: int = Field(2048, ge=16)


@register_stage("bottleneck")
class Bottleneck(Stage):
    Params = BottleneckParams

    def run(self, ctx: StageContext) -> StageResult:
        p: BottleneckParams = self.params
        # The teacher is the model being split (the output of the previous stages), as in BottleFit.
        source = ctx.model
        if source.arch is None:
            from edgekit.errors import EdgekitError
            raise EdgekitError(f"model from {source.source} cannot be rebuilt from source, so it cannot be split",
                               "give a builtin:, torchvision:, timm: model or an edgekit checkpoint")
        spec = source.spec
        cfg = make_config(source.module, source.arch, spec.input_shape, p.split_at, p.channels, p.stride,
                          p.encoder_width, p.decoder_width)
        model = build_split_model(cfg, copy.deepcopy(source.module))
        ui.info(f"bottleneck after '{cfg.split_at}': feature {cfg.feature_shape} -> bottleneck "
                f"{cfg.bottleneck_shape} ({math.prod(cfg.bottleneck_shape)} bytes at 8 bits)")
        teacher_module = copy.deepcopy(source.module).eval().requires_grad_(False)

        # Stage 1: head distillation (encoder + decoder vs the teacher's features at the split).
        def student_features(m: SplitModel, x: torch.Tensor) -> torch.Tensor:
            return m.decoder(m.quant(m.encoder(x)))

        def teacher_features(x: torch.Tensor) -> torch.Tensor:
            return feature_at(teacher_module, cfg.split_at, x)

        model.frozen = {"tail"}
        with on_device(teacher_module):  # the teacher runs where the split model trains
            stage1 = train(model, spec, ctx.data, p.head_distillation,
                           objective=feature_distill_objective(student_features, teacher_features),
                           description="bottleneck: head distillation", checkpoint_dir=ctx.work_dir / "stage1",
                           resume=ctx.resume,
                           trainable=list(model.encoder.parameters()) + list(model.decoder.parameters()))
        if p.quantize:
            self._calibrate(model, spec, ctx)
        after_stage1 = evaluate_module(model, spec, ctx.data.val)["top1"]

        # Stage 2: KD fine-tuning of decoder + tail (and the encoder unless frozen).
        model.frozen = {"encoder"} if p.freeze_encoder else set()
        trainable = [*model.decoder.parameters(), *model.tail.parameters()]
        if not p.freeze_encoder:
            trainable += list(model.encoder.parameters())
        model.encoder.requires_grad_(not p.freeze_encoder)
        with on_device(teacher_module):
            stage2 = train(model, spec, ctx.data, p.finetune,
                           objective=kd_objective(teacher_module, p.kd_temperature, p.kd_alpha),
                           description="bottleneck: fine-tune (KD)", checkpoint_dir=ctx.work_dir / "stage2",
                           resume=ctx.resume, trainable=trainable)
        if p.quantize and not p.freeze_encoder:
            self._calibrate(model, spec, ctx)   # the encoder moved: refit the transfer range
        model.frozen = set()
        model.requires_grad_(True)
        model.eval()

        loaded = LoadedModel(model, spec, source=source.source, arch=cfg.arch(), notes=dict(source.notes))
        metrics = {"split_at": cfg.split_at, "feature_shape": list(cfg.feature_shape),
                   "bottleneck_shape": list(cfg.bottleneck_shape), "quantization": model.quant.settings(),
                   **transfer_sizes(cfg, ctx.data.test),
                   **complexity(model, teacher_module, spec),
                   "val_top1_after_head_distillation": after_stage1,
                   "val_top1_split": evaluate_module(model, spec, ctx.data.val)["top1"],
                   "val_top1_teacher": evaluate_module(teacher_module, spec, ctx.data.val)["top1"],
                   "test_top1_split": evaluate_module(model, spec, ctx.data.test)["top1"],
                   "test_top1_teacher": evaluate_module(teacher_module, spec, ctx.data.test)["top1"],
                   "head_distillation": stage1.model_dump(), "finetune": stage2.model_dump()}
        ui.info(f"bottleneck: split top-1 {metrics['val_top1_split']:.2f}% vs teacher "
                f"{metrics['val_top1_teacher']:.2f}% (val); {metrics['bottleneck_bytes']} B/image "
                f"= {100 * metrics['bottleneck_ratio_raw']:.1f}% of the raw input")
        return StageResult(loaded, metrics)

    def _calibrate(self, model: SplitModel, spec, ctx: StageContext) -> None:
        values = []
        model.eval()
        with torch.no_grad(), on_device(model) as device:
            for x, _ in prepared_batches(ctx.data.train, spec, 256, limit=self.params.calibration_images,
                                         device=device):
                values.append(model.encoder(x).cpu())
        model.quant.calibrate(torch.cat(values))
        s = model.quant.settings()
        ui.info(f"bottleneck: 8-bit transfer scale {s['scale']:.5f}, zero point {s['zero_point']}")


def complexity(model: SplitModel, teacher: torch.nn.Module, spec) -> dict:
    from edgekit.spec import ModelSpec

    head = model.head_module()
    tail_spec = ModelSpec(input_shape=model.cfg.bottleneck_shape, num_classes=spec.num_classes)
    return {"head_params": count_params(head), "head_macs": count_macs(head, spec),
            "tail_params": count_params(model.tail_module()), "tail_macs": count_macs(model.tail_module(), tail_spec),
            "split_params": count_params(model), "split_macs": count_macs(model, spec),
            "teacher_params": count_params(teacher), "teacher_macs": count_macs(teacher, spec)}
