"""Issue-3 bars on Fashion-MNIST (run with ``nice -n 10``; teachers are cached in benchmarks/cache/).

1. Prune the teacher to <= 50% MACs (40%), distill from the unpruned teacher (recipes/prune-distill-fmnist.yaml
   through the real ``compress`` pipeline): student top-1 within 1.0 point of the teacher, and ONNX
   Runtime latency >= 1.6x lower (same batch and threads, teacher and student timed interleaved).
2. Distill the teacher into a smaller, different architecture (default MobileNetV3-small for 32 px,
   builtin:mobilenetv3s_32) vs training that student from scratch with the same init, data, epochs and
   steps.

    python -m benchmarks run prune-distill-fmnist
    # other teachers / bundles (e.g. the x86-cpu recipe's bundle from vs_peers):
    python -m benchmarks run prune-distill-fmnist --set teacher=builtin:resnet8 --set teacher_epochs=2 \
        --set bundle=benchmarks/cache/vs-peers-resnet/edgekit-default --set small_student=builtin:tinycnn?width=16

The teacher (default builtin:resnet18_28, the ResNet-18 layout at quarter width, 3 full epochs:
benchmarks/_teacher.py RESNET18, shared with the quantization benchmark) is trained once and cached in benchmarks/cache/.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from benchmarks._teacher import RESNET18, teacher_checkpoint
from benchmarks.schema import Measured
from edgekit.data import load_data
from edgekit.models import load_checkpoint, load_model
from edgekit.models.complexity import count_macs, count_params
import edgekit
from edgekit.pruning.measure import ort_latency_interleaved
from edgekit.stages import STAGES, StageContext
from edgekit.target import load_target
from edgekit.training import TrainParams, evaluate_module, train
from edgekit.training.loop import has_depthwise_conv

ROOT = Path(__file__).resolve().parents[1]
SMALL_STUDENT = "builtin:mobilenetv3s_32"


def small_student_comparison(teacher, data, epochs: int, steps: int | None, student: str = SMALL_STUDENT) -> dict:
    """KD into a smaller, different architecture vs the same one trained from scratch (same init, data,
    epochs, steps)."""
    torch.manual_seed(0)
    scratch = load_model(student, num_classes=10, input_size=teacher.spec.hw)
    fast = not has_depthwise_conv(scratch.module)   # bf16 is ~18x slower for MobileNetV3 on this CPU
    common = dict(epochs=epochs, max_steps_per_epoch=steps, lr=0.05, warmup_epochs=0.1, eval_limit=2000,
                  bf16=fast, channels_last=fast, keep="last")
    train(scratch.module, scratch.spec, data, TrainParams(**common), description="scratch")
    Distill = STAGES.get("distill")
    params = Distill.Params(student=student, student_input_size=teacher.spec.hw, loss="kd", temperature=4,
                            alpha=0.9, **common)
    torch.manual_seed(0)  # the stage builds its student first: same initialisation as the scratch run
    result = Distill(params).run(StageContext(model=teacher, teacher=teacher, data=data,
                                              target=load_target("x86-cpu"),
                                              work_dir=ROOT / "benchmarks" / "cache" / (
                                                  f"work-small-student-{teacher.sha256 or 'teacher'}"[:60]
                                                  + f"-e{epochs}x{steps or 'full'}")))
    distilled = result.model
    return {"student": student, "input": list(distilled.spec.input_shape), "epochs": epochs, "bf16": fast,
            "steps_per_epoch": steps, "params": count_params(distilled.module),
            "macs": count_macs(distilled.module, distilled.spec),
            "scratch_test_top1": evaluate_module(scratch.module, scratch.spec, data.test)["top1"],
            "distilled_test_top1": evaluate_module(distilled.module, distilled.spec, data.test)["top1"]}


def run(work: Path, teacher: str = RESNET18[0], teacher_epochs: int = RESNET18[1],
        teacher_checkpoint_path: str | None = None, recipe: str = "prune-distill-fmnist", bundle: str | None = None,
        small_student: str | None = SMALL_STUDENT, small_epochs: int = 2, small_steps: int | None = None,
        threads: int = 2) -> Measured:
    """The kind ``prune_distill``. ``teacher_checkpoint_path``: a trained teacher (else ``teacher`` is trained
    for ``teacher_epochs`` full epochs and cached); ``bundle``: reuse a compress bundle of that teacher instead
    of running the recipe; ``small_student`` None skips the small-student comparison."""
    teacher_path = (Path(teacher_checkpoint_path) if teacher_checkpoint_path
                    else teacher_checkpoint(teacher, teacher_epochs, steps=None, fast=True)).resolve()
    loaded = load_checkpoint(teacher_path)
    data = load_data("fashion-mnist", image_size=loaded.spec.hw)
    if bundle:
        bundle_dir = Path(bundle)
        manifest = json.loads((bundle_dir / "manifest.json").read_text())
    else:
        bundle_dir = work / "bundle"
        manifest = edgekit.compress(str(teacher_path), "fashion-mnist", target="x86-cpu", recipe=recipe,
                                    out=bundle_dir, force=True, threads=threads).manifest.as_json()
    student = load_checkpoint(bundle_dir / "artifacts" / "model.pt")  # the shipped file, weights_only=True
    teacher_top1 = evaluate_module(loaded.module, loaded.spec, data.test)["top1"]
    student_top1 = evaluate_module(student.module, student.spec, data.test)["top1"]
    latency = {}
    for batch in (1, 32):
        lat = ort_latency_interleaved({"teacher": (loaded.module, loaded.spec),
                                       "student": (student.module, student.spec)},
                                      batch=batch, threads=threads, rounds=30, runs_per_round=10)
        latency[f"batch{batch}"] = {"teacher_p50_ms": lat["teacher"]["p50_ms"], "student_p50_ms": lat["student"]["p50_ms"],
                                    "teacher_mean_ms": lat["teacher"]["mean_ms"],
                                    "student_mean_ms": lat["student"]["mean_ms"],
                                    "speedup_p50": round(lat["teacher"]["p50_ms"] / lat["student"]["p50_ms"], 3)}
    prune_metrics = manifest["stages"][0]["metrics"]
    distill_metrics = manifest["stages"][1]["metrics"]
    result = {
        "recipe": manifest["recipe"]["name"],
        "teacher": {"source": loaded.source if teacher_checkpoint_path else teacher, "checkpoint": teacher_path.name,
                    "notes": loaded.notes, "test_top1": teacher_top1, "params": count_params(loaded.module),
                    "macs": count_macs(loaded.module, loaded.spec)},
        "pruned_distilled": {"test_top1": student_top1, "params": count_params(student.module),
                             "macs": count_macs(student.module, student.spec),
                             "macs_fraction": round(count_macs(student.module, student.spec)
                                                    / count_macs(loaded.module, loaded.spec), 4),
                             "distill_seconds": distill_metrics["seconds"],
                             "teacher_logits": distill_metrics["teacher_logits"],
                             "prune_steps": prune_metrics["steps_taken"]},
        "ort_latency_interleaved": latency, "threads": threads, "load_average": os.getloadavg(),
    }
    if small_student:
        result["small_student"] = small_student_comparison(loaded, data, epochs=small_epochs, steps=small_steps,
                                                           student=small_student)
    return summarize(result)


def summarize(r: dict) -> Measured:
    """Rows: the teacher, the pruned + distilled student (with their interleaved ONNX Runtime p50 at batch 1 and
    32) and, when run, the small student distilled and from scratch."""
    t, s, lat = r["teacher"], r["pruned_distilled"], r["ort_latency_interleaved"]
    rows = [{"model": f"teacher {t['source']}", "test_top1": t["test_top1"], "params": t["params"], "macs": t["macs"],
             **{f"ort_p50_ms_{b}": v["teacher_p50_ms"] for b, v in lat.items()}},
            {"model": "pruned + distilled", "test_top1": s["test_top1"], "params": s["params"], "macs": s["macs"],
             **{f"ort_p50_ms_{b}": v["student_p50_ms"] for b, v in lat.items()}}]
    metrics = {"macs_fraction": s["macs_fraction"], "top1_drop_pt": round(t["test_top1"] - s["test_top1"], 3),
               **{f"ort_speedup_{b}": v["speedup_p50"] for b, v in lat.items()}}
    sm = r.get("small_student")
    if sm:
        for how, key in (("distilled", "distilled_test_top1"), ("from scratch", "scratch_test_top1")):
            rows.append({"model": f"small student {sm['student']}, {how}", "test_top1": sm[key], "params": sm["params"],
                         "macs": sm["macs"]})
        metrics["kd_minus_scratch_pt"] = round(sm["distilled_test_top1"] - sm["scratch_test_top1"], 3)
    return Measured(rows=rows, metrics=metrics, details={k: r[k] for k in r if k not in ("ort_latency_interleaved",)}
                    | {"ort_latency_interleaved": lat},
                    notes=[f"teacher {t['source']} ({t['notes'].get('weights', '')}); recipe {r.get('recipe')}; ONNX "
                           f"Runtime FP32, {r['threads']} thread(s), teacher and student interleaved; load average "
                           + ", ".join(f"{x:.2f}" for x in r["load_average"])]
                    + ([f"small student: {sm['epochs']} epochs x {sm['steps_per_epoch'] or 'all'} steps of 128, same "
                        "init for both"] if sm else []))
