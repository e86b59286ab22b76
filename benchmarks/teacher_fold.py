"""The distill stage's teacher with BatchNorm folded into its convolutions (``folded_teacher``) against the
teacher as it is: the forward pass a KD step runs on every batch when the teacher's logits cannot be cached
(augmentation on).

Teacher: the resnet-large teacher of vs_peers (``builtin:resnet18_32``, 557 MMACs at 32 px, trained on
Fashion-MNIST and cached in benchmarks/cache/). Batch 128 of real training images, the x86-cpu recipe's bf16
autocast + channels_last where this CPU has native bf16 (else fp32, as edgekit decides), every core.
Variants alternate each round so that the host's drift hits both alike; the median of the rounds is kept.
Also: the largest logit difference and the argmax agreement of the two teachers on the first 2000 test
images (the same function: they should differ by rounding only).

    PYTHONPATH=. python benchmarks/teacher_fold.py [--rounds 15]

Writes benchmarks/results/teacher_fold.{json,md}.
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
from edgekit.training.distill import folded_teacher  # noqa: E402
from edgekit.training.loop import TrainParams, use_bf16  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    teacher = load_checkpoint(teacher_checkpoint("builtin:resnet18_32", epochs=3, steps=100, fast=True))
    spec = teacher.spec
    data = load_data("fashion-mnist", image_size=spec.hw)
    plain = teacher.module.eval().requires_grad_(False)
    folded = folded_teacher(plain)
    bf16 = use_bf16(TrainParams(bf16=True), plain, "teacher_fold")
    images, _ = next(iter(prepared_batches(data.train, spec, 128)))
    x = images.contiguous(memory_format=torch.channels_last)
    for m in (plain, folded):
        m.to(memory_format=torch.channels_last)

    def forward(t):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return t(x).float()

    cases = {"teacher forward, as is": lambda: forward(plain), "teacher forward, BN folded": lambda: forward(folded)}
    for run in cases.values():   # warm-up: oneDNN primitive creation
        run(), run()
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(args.rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
        print(f"round {r + 1}/{args.rounds}", flush=True)

    with torch.no_grad():
        test = [(plain(x_), folded(x_), y) for x_, y in prepared_batches(data.test, spec, 250, limit=2000)]
    diff = max(float((a - b).abs().max()) for a, b, _ in test)
    agree = sum(int((a.argmax(1) == b.argmax(1)).sum()) for a, b, _ in test) / sum(len(y) for *_, y in test)
    medians = {name: statistics.median(v) * 1000 for name, v in seconds.items()}
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": host_identity(),
              "threads": torch.get_num_threads(), "precision": "bf16 autocast" if bf16 else "fp32", "batch": 128,
              "rounds": args.rounds, "median_ms": {k: round(v, 1) for k, v in medians.items()},
              "fp32_test_logits_max_abs_diff": diff, "fp32_test_argmax_agreement": agree,
              "command": f"PYTHONPATH=. python benchmarks/teacher_fold.py --rounds {args.rounds}"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "teacher_fold.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# KD teacher with BatchNorm folded ({result['date']})", "",
             f"Host: {describe_host(result['host'])}, {result['threads']} threads; ResNet-18 teacher (557 MMACs, "
             f"32 px); batch 128, {result['precision']}, channels_last; "
             f"median of {args.rounds} alternated rounds. Reproduce: `{result['command']}`.", "",
             "| what | ms per batch |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in medians.items()]
    gain = 1 - medians["teacher forward, BN folded"] / medians["teacher forward, as is"]
    lines += ["", f"Teacher forward {gain:.1%} faster folded. FP32 logits of the two teachers on 2000 "
              f"test images: largest difference {diff:.2e}, argmax agreement {agree:.2%}."]
    (RESULTS / "teacher_fold.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
