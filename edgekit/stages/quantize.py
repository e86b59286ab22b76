"""``quantize``: plan INT8 and, when post-training quantization loses too much, fine-tune with
fake quantization (QAT) so the weights learn to live on the INT8 grid.

- ``method: ptq`` only measures: it simulates INT8 (fake-quant with calibrated ranges) and records the
  expected drop; the backends quantize at compile time.
- ``method: qat`` does the same, and when the simulated drop exceeds ``max_accuracy_drop`` (or
  ``always: true``) fine-tunes with fake quantization: torchao's PT2E QAT (``prepare_qat_pt2e``;
  symmetric per-channel int8 weights, int8 activations, conv+BN folding simulated) driven by the
  shared training loop. NNCF's torch QAT was not used: it JIT-compiles a C++ extension, which
  timed out here and is a poor dependency for users.

A stage never compiles, so the QAT-adapted *float* weights are copied back into the original
architecture (same module names, so checkpoints, caching and every exporter keep working); each
backend's INT8 compiler then calibrates those weights (ONNX Runtime QDQ, NNCF/OpenVINO, LiteRT,
TensorRT QDQ) and lands on the grid the fine-tuning adapted to.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import warnings
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from edgekit import ui
from edgekit.calibration import draw_calibration
from edgekit.errors import EdgekitError
from edgekit.stages.base import Stage, StageContext, StageResult, register_stage
from edgekit.training import TrainParams, evaluate_module, train
from edgekit.training.device import using_device


class QuantizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["ptq", "qat"] = "qat"
    max_accuracy_drop: float = Field(1.0, ge=0, description="points of val top-1 PTQ may lose before QAT runs")
    always: bool = Field(False, description="run QAT even when PTQ is within the bound")
    calibration_size: int = Field(300, ge=1)
    epochs: int = Field(2, ge=0)
    lr: float = Field(0.005, gt=0)
    batch_size: int = Field(64, ge=1)
    max_steps_per_epoch: int | None = None
    eval_limit: int | None = 2000
    augment: bool = Field(False, description="crop/flip augmentation during QAT (off: short fine-tune on clean data)")
    hflip: bool = False


def fake_quant_model(module: torch.nn.Module, sample: torch.Tensor):
    """PT2E QAT-prepared copy of ``module`` (dynamic batch) whose ``train()/eval()`` work."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        module = copy.deepcopy(module).train()
        exported = torch.export.export(module, (sample,), dynamic_shapes=({0: batch},)).module()
        with _export_accepts_functions():
            prepared = prepare_qat_pt2e(exported, quantizer)
    allow_exported_model_train_eval(prepared)
    return prepared


class _FunctionModule(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


@contextlib.contextmanager
def _export_accepts_functions():
    """torchao 0.18 exports its conv+BN QAT patterns as plain functions, which torch 2.14's
    ``torch.export.export`` refuses ("Expected `mod` to be an instance of nn.Module"); wrap them in a
    module for the duration of ``prepare_qat_pt2e`` only."""
    original = torch.export.export

    def export(mod, *args, **kwargs):
        return original(mod if isinstance(mod, torch.nn.Module) else _FunctionModule(mod), *args, **kwargs)

    torch.export.export = export
    try:
        yield
    finally:
        torch.export.export = original


def copy_float_weights(prepared: torch.nn.Module, original: torch.nn.Module) -> int:
    """Copy parameters/buffers back by name; returns how many tensors were copied."""
    source = prepared.state_dict()
    target = original.state_dict()
    copied = {k: source[k] for k in target if k in source and source[k].shape == target[k].shape}
    missing = [k for k in target if k not in copied and not k.endswith("num_batches_tracked")]
    if missing:
        raise EdgekitError(f"QAT could not map {len(missing)} tensors back to the model (e.g. {missing[0]})",
                           "use method: ptq for this model")
    original.load_state_dict({**target, **copied})
    return len(copied)


@register_stage("quantize")
class Quantize(Stage):
    Params = QuantizeParams

    def run(self, ctx: StageContext) -> StageResult:
        p: QuantizeParams = self.params
        model = ctx.model
        spec = model.spec
        float_top1 = evaluate_module(model.module, spec, ctx.data.val, limit=p.eval_limit)["top1"]
        images, source = ctx.data.calibration_source()
        cal = draw_calibration(images, spec, p.calibration_size, ctx.seed, source=source)
        try:
            prepared = fake_quant_model(model.module, torch.from_numpy(cal.inputs[:2]))
        except Exception as err:  # noqa: BLE001 - torch.export errors are long; one line for the user
            raise EdgekitError(f"quantize stage: the model cannot be prepared for fake quantization "
                               f"({type(err).__name__}: {str(err).splitlines()[0][:160]})",
                               "use method: ptq (backends quantize at compile time)") from None
        prepared.eval()
        with torch.no_grad():  # calibrate observers with the calibration set
            for x in cal.batches(32):
                prepared(torch.from_numpy(x))
        with using_device(torch.device("cpu")):  # the PT2E graph stays on the CPU (see QAT below)
            ptq_top1 = evaluate_module(prepared, spec, ctx.data.val, limit=p.eval_limit)["top1"]
        metrics = {"method": p.method, "float_val_top1": float_top1, "ptq_simulated_val_top1": ptq_top1,
                   "ptq_simulated_drop": round(float_top1 - ptq_top1, 3), "max_accuracy_drop": p.max_accuracy_drop,
                   "simulation": "torchao PT2E fake-quant (int8 per-channel weights, int8 activations)"}
        run_qat = p.method == "qat" and (p.always or float_top1 - ptq_top1 > p.max_accuracy_drop)
        if not run_qat:
            why = ("method ptq" if p.method == "ptq" else
                   f"PTQ drop {float_top1 - ptq_top1:.2f} pt within {p.max_accuracy_drop} pt: QAT not needed")
            ui.info(f"  quantize: {why}")
            return StageResult(model, {**metrics, "qat": False, "why": why}, changed_model=False)
        ui.info(f"  quantize: simulated PTQ drop {float_top1 - ptq_top1:.2f} pt -> QAT fine-tuning")
        # On the CPU whatever the run's device: the PT2E graph was exported on the CPU and may hold CPU
        # constants, and QAT here is a short fine-tune.
        with using_device(torch.device("cpu")):
            report = train(prepared, spec, ctx.data, TrainParams(epochs=p.epochs, lr=p.lr, batch_size=p.batch_size,
                                                                max_steps_per_epoch=p.max_steps_per_epoch,
                                                                eval_limit=p.eval_limit, seed=ctx.seed,
                                                                augment=p.augment, hflip=p.hflip),
                           description="QAT", checkpoint_dir=ctx.work_dir, resume=ctx.resume)
            prepared.eval()  # (returns None: the PT2E wrapper's own train/eval)
            qat_top1 = evaluate_module(prepared, spec, ctx.data.val, limit=p.eval_limit)["top1"]
        copied = copy_float_weights(prepared, model.module)
        model.module.eval()
        model.notes["quantization"] = "QAT-adapted weights (torchao PT2E fake-quant fine-tuning)"
        return StageResult(model, {**metrics, "qat": True, "qat_simulated_val_top1": qat_top1,
                                   "qat_gain": round(qat_top1 - ptq_top1, 3), "tensors_copied": copied,
                                   "train": report.model_dump()})
