"""How the distill stage runs its teacher on every batch (``inference_teacher``): through OpenVINO at the
training's precision, against PyTorch with BatchNorm folded (``folded_teacher``, the fallback) and the teacher
as it is. That forward runs on every KD step when the teacher's logits cannot be cached (augmentation on).

Teachers: the two vs_peers teachers (``builtin:resnet18_32``, 557 MMACs, and ``builtin:mobilenetv3s_32``, both
32 px, trained on Fashion-MNIST and cached in benchmarks/cache/). Batch 128 of real training images; PyTorch in
the precision the distill stage trains a student of the teacher's family in (bf16 autocast + channels_last
where this CPU has native bf16 and the model no depthwise convolutions, else fp32), OpenVINO at the same
precision; every core. Variants alternate each round so that the host's drift hits all alike; the median of
the rounds is kept. Also each variant's logits against the FP32 PyTorch teacher on the first 2000 test images
(largest difference, argmax agreement).

    python -m benchmarks run kd-teacher [--set rounds=15]
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from benchmarks._teacher import teacher_checkpoint
from benchmarks.schema import Measured
from edgekit.data import load_data
from edgekit.data.core import prepared_batches
from edgekit.models import load_checkpoint
from edgekit.training.distill import folded_teacher, inference_teacher
from edgekit.training.loop import TrainParams, bf16_blocker
TEACHERS = ("builtin:resnet18_32", "builtin:mobilenetv3s_32")


def measure(source: str, rounds: int) -> dict:
    teacher = load_checkpoint(teacher_checkpoint(source, epochs=3, steps=100, fast=True))
    spec = teacher.spec
    data = load_data("fashion-mnist", image_size=spec.hw)
    plain = teacher.module.eval().requires_grad_(False)
    bf16 = bf16_blocker(TrainParams(bf16=True), plain) is None
    folded = folded_teacher(plain)
    runtime, how = inference_teacher(plain, spec, source, bf16)
    images, _ = next(iter(prepared_batches(data.train, spec, 128)))
    x = images.contiguous(memory_format=torch.channels_last)
    for m in (plain, folded):
        m.to(memory_format=torch.channels_last)

    def forward(t, x_=x):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return t(x_).float()

    cases = {"PyTorch, as is": plain, "PyTorch, BN folded": folded, f"{how} (edgekit's)": runtime}
    for t in cases.values():   # warm-up: oneDNN primitive creation, OpenVINO's first inference
        forward(t), forward(t)
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, t in cases.items():
            start = time.perf_counter()
            forward(t)
            seconds[name].append(time.perf_counter() - start)
    test = list(prepared_batches(data.test, spec, 250, limit=2000))
    with torch.no_grad():
        exact = [plain(x_).float() for x_, _ in test]
    agreement = {}
    for name, t in cases.items():
        got = [forward(t, x_) for x_, _ in test]
        agreement[name] = {"max_abs_diff": max(float((a - b).abs().max()) for a, b in zip(got, exact)),
                           "argmax_agreement": sum(int((a.argmax(1) == b.argmax(1)).sum()) for a, b in zip(got, exact))
                           / sum(len(y) for _, y in test)}
    runtime.close()
    for m in (plain, folded):
        m.to(memory_format=torch.contiguous_format)
    print(f"{source}: done", flush=True)
    return {"teacher": source, "precision": "bf16" if bf16 else "fp32", "edgekit_runs": how,
            "median_ms": {k: round(statistics.median(v) * 1000, 1) for k, v in seconds.items()},
            "vs_fp32_pytorch": agreement}


def summarize(raw: dict) -> Measured:
    """One row per teacher and way of running it."""
    rows = [{"teacher": row["teacher"], "precision": row["precision"], "how": name, "ms_per_batch": ms,
             "max_abs_diff_vs_fp32": row["vs_fp32_pytorch"][name]["max_abs_diff"],
             "argmax_agreement": row["vs_fp32_pytorch"][name]["argmax_agreement"]}
            for row in raw["teachers"] for name, ms in row["median_ms"].items()]
    return Measured(rows=rows, details={k: raw[k] for k in ("threads", "batch", "rounds") if k in raw},
                    notes=[f"batch {raw.get('batch', 128)} at 32 px, channels_last for PyTorch, every core "
                           f"({raw.get('threads')} threads); median of {raw.get('rounds')} alternated rounds"])


def run(work: Path, rounds: int = 15) -> Measured:
    """The kind ``kd_teacher``."""
    rows = [measure(source, rounds) for source in TEACHERS]
    return summarize({"threads": torch.get_num_threads(), "batch": 128, "rounds": rounds, "teachers": rows})
