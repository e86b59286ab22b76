"""Building blocks of the ``distill`` stage that are not losses: feeding the teacher the student's
view, running it fast (through OpenVINO on the CPU, else with BatchNorm folded into its convolutions), and
caching teacher logits when that view is deterministic (no augmentation, no mixup)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from edgekit import ui

from edgekit.data.core import DataSplits, prepared_batches
from edgekit.models.openvino_export import to_openvino
from edgekit.runtime import OpenVinoSession
from edgekit.runtime.base import import_runtime
from edgekit.spec import ModelSpec
from edgekit.training.device import current_device, on_device


def same_input(a: ModelSpec, b: ModelSpec) -> bool:
    return (a.input_shape, a.channel_order, a._per_channel(a.mean), a._per_channel(a.std)) == (
        b.input_shape, b.channel_order, b._per_channel(b.mean), b._per_channel(b.std))


def input_converter(student: ModelSpec, teacher: ModelSpec) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Maps the student's model-ready batch to the teacher's (undo the student's normalisation, then
    the teacher's ``prepare``), so a 32 px RGB student and a 28 px grey teacher see the same view.
    None when both expect the same input."""
    if same_input(student, teacher):
        return None
    mean = torch.tensor(student._per_channel(student.mean)).view(1, -1, 1, 1)
    std = torch.tensor(student._per_channel(student.std)).view(1, -1, 1, 1)

    def convert(x: torch.Tensor) -> torch.Tensor:
        raw = (x.float() * std.to(x.device) + mean.to(x.device)).clamp(0, 1)
        if student.channel_order == "BGR":
            raw = raw.flip(1)
        return teacher.prepare(raw)

    return convert


def has_forward_hooks(module: nn.Module) -> bool:
    """A hook on the module or any submodule: a teacher that carries one runs as it is (a folded copy or an
    OpenVINO model would never call it)."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def folded_teacher(teacher: nn.Module) -> nn.Module:
    """A copy of the (frozen, eval-mode) teacher with each BatchNorm folded into the convolution before it.

    Why: with augmentation on, the teacher runs a forward pass on every training batch, and a large teacher's
    forward is most of a KD step (ResNet-18 teacher, 20%-MACs student, batch 128 at 32 px: 190 of 370 ms).
    Folded, the same function costs one conv instead of conv + BN: about an eighth less (bf16 autocast,
    channels_last), the logits equal to bf16 rounding. torch's FX
    ``fuse`` does the folding (it skips a conv whose output feeds anything but its BN); a teacher FX cannot
    trace is returned as it is, as is one without BatchNorm (ViTs: nothing to fold) and one with forward hooks
    (the folded copy would lose those on the model itself and on the BatchNorms)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in teacher.modules()) or has_forward_hooks(teacher):
        return teacher
    from torch.fx.experimental.optimization import fuse

    try:
        folded = fuse(teacher.eval())
    except Exception as e:  # noqa: BLE001 - FX tracing fails in many ways (control flow, custom ops); unfolded is correct
        ui.info(f"  distill: teacher runs unfolded (FX cannot trace it: {type(e).__name__})")
        return teacher
    return folded.eval().requires_grad_(False)


class SessionTeacher(nn.Module):
    """A frozen teacher whose forward runs through a runtime session: torch batch in, float32 logits out (no
    autograd; the teacher is never trained). ``close`` releases the session."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.predict(x.detach().float().contiguous().cpu().numpy(), batch_size=len(x)))

    def close(self) -> None:
        self.session.close()


def inference_teacher(teacher: nn.Module, spec: ModelSpec, source: str, bf16: bool,
                      work_dir: Path | None = None) -> tuple[nn.Module, str]:
    """The frozen teacher that runs on every training batch, and how it runs (the stage's ``teacher_runtime``).

    Why: with augmentation on, the teacher's forward is about half of a KD step (ResNet-18 teacher, 20%-MACs
    student, batch 128 at 32 px, bf16 autocast). On the CPU it runs through OpenVINO's CPU plugin, which keeps
    its weights in the kernels' layout and fuses the convolutions' epilogues, at the training's precision: about
    half the time of PyTorch with BatchNorm folded for a ResNet-18 teacher, a third less than PyTorch as is for a
    MobileNetV3-small one (``benchmarks/kd_teacher.py``). Elsewhere (a GPU, OpenVINO not installed or unable to convert the teacher) it runs in PyTorch
    with BatchNorm folded (``folded_teacher``). A teacher with forward hooks runs as it is: a hook would fire
    in neither."""
    if current_device().type == "cpu" and not has_forward_hooks(teacher):
        hint = "bf16" if bf16 else "f32"
        try:
            ov = import_runtime("openvino")
            ov_model, _ = to_openvino(ov, teacher, spec, source, work_dir)
            session = OpenVinoSession(ov_model, torch.get_num_threads(), hint)
            return SessionTeacher(session), f"openvino {session.info['executed_precision']}"
        except Exception as e:  # noqa: BLE001 - missing runtime, failed conversion or compile: PyTorch is correct
            ui.info(f"  distill: teacher runs in PyTorch (OpenVINO {hint}: {str(e).strip().splitlines()[0][:120]})")
    folded = folded_teacher(teacher)
    return folded, "torch, BatchNorm folded" if folded is not teacher else "torch"


class IndexedLabels(Dataset):
    """Wraps a dataset so each label becomes ``[label, index]``: the objective looks up cached
    teacher logits by index (labels may be -1 for unlabeled images)."""

    def __init__(self, inner: Dataset):
        self.inner = inner
        self.labels = getattr(inner, "labels", None)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        image, label = self.inner[i]
        return image, torch.tensor([int(label), i])


@torch.no_grad()
def teacher_logits(teacher: nn.Module, teacher_spec: ModelSpec, ds: Dataset,
                   student_spec: ModelSpec) -> torch.Tensor:
    """Teacher logits for every training image in dataset order, computed once. The teacher sees
    the student's prepared view (converted), exactly what it would see on the fly without augmentation."""
    teacher.eval()
    convert = input_converter(student_spec, teacher_spec) or (lambda x: x)
    with on_device(teacher) as device:
        return torch.cat([teacher(convert(x)).float()
                          for x, _ in prepared_batches(ds, student_spec, 256, device=device)])


def with_indexed_train(data: DataSplits) -> DataSplits:
    return replace(data, train=IndexedLabels(data.train))
