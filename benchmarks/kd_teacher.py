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

    PYTHONPATH=. python benchmarks/kd_teacher.py [--rounds 15]

Writes benchmarks/results/kd_teacher.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _teacher import teacher_checkpoint  # noqa: E402

from edgekit.data import load_data  # noqa: E402
from edgekit.data.core import prepared_batches  # noqa: E402
from edgekit.models import load_checkpoint  # noqa: E402
from edgekit.profiling.latency import host_identity  # noqa: E402
from edgekit.runtime.identity import describe_host  # noqa: E402
from edgekit.training.distill import folded_teacher, inference_teacher  # noqa: E402
from edgekit.training.loop import TrainParams, bf16_blocker  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rows = [measure(source, args.rounds) for source in TEACHERS]
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": host_identity(),
              "threads": torch.get_num_threads(), "batch": 128, "rounds": args.rounds, "teachers": rows,
              "command": f"PYTHONPATH=. python benchmarks/kd_teacher.py --rounds {args.rounds}"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kd_teacher.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# The KD teacher's forward, as the distill stage runs it ({result['date']})", "",
             f"Host: {describe_host(result['host'])}, {result['threads']} threads; batch 128 at 32 px, channels_last "
             f"for PyTorch; median of {args.rounds} alternated rounds. Reproduce: `{result['command']}`.", "",
             "| teacher | precision | how it runs | ms per batch | largest logit diff vs FP32 | argmax agreement |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        for name, ms in row["median_ms"].items():
            a = row["vs_fp32_pytorch"][name]
            lines.append(f"| {row['teacher']} | {row['precision']} | {name} | {ms:.1f} | {a['max_abs_diff']:.2e} | "
                         f"{a['argmax_agreement']:.2%} |")
    (RESULTS / "kd_teacher.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
