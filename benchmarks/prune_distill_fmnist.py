"""Issue-3 bars on Fashion-MNIST (run with ``nice -n 10``; teachers are cached in benchmarks/cache/).

1. Prune the teacher to <= 50% MACs (40%), distill from the unpruned teacher (recipes/prune-distill-fmnist.yaml
   through the real ``compress`` pipeline): student top-1 within 1.0 point of the teacher, and ONNX
   Runtime latency >= 1.6x lower (same batch and threads, teacher and student timed interleaved).
2. Distill the teacher into a smaller, different architecture (default MobileNetV3-small for 32 px,
   builtin:mobilenetv3s_32) vs training that student from scratch with the same init, data, epochs and
   steps.

    PYTHONPATH=. python benchmarks/prune_distill_fmnist.py
    # other teachers / bundles (e.g. the x86-cpu recipe's bundle from benchmarks/vs_peers.py):
    PYTHONPATH=. python benchmarks/prune_distill_fmnist.py --teacher builtin:resnet8 --teacher-epochs 2 \
        --bundle benchmarks/cache/vs_peers/edgekit-x86-cpu --small-student builtin:tinycnn?width=16

The teacher (default builtin:resnet18_28, the ResNet-18 layout at quarter width, 3 full epochs:
benchmarks/_teacher.py RESNET18, shared with the quantization benchmark) is trained once and cached in benchmarks/cache/.

Writes benchmarks/results/prune_distill_fmnist.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _teacher import RESNET18, teacher_checkpoint  # noqa: E402

from edgekit.data import load_data  # noqa: E402
from edgekit.models import load_checkpoint, load_model  # noqa: E402
from edgekit.pipeline import CompressOptions, compress  # noqa: E402
from edgekit.models.complexity import count_macs, count_params  # noqa: E402
from edgekit.pruning.measure import ort_latency_interleaved  # noqa: E402
from edgekit.stages import STAGES, StageContext  # noqa: E402
from edgekit.target import load_target  # noqa: E402
from edgekit.training import TrainParams, evaluate_module, train  # noqa: E402
from edgekit.training.loop import has_depthwise_conv  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=RESNET18[0])
    parser.add_argument("--teacher-epochs", type=int, default=RESNET18[1], help="full epochs when training it")
    parser.add_argument("--teacher-checkpoint", type=Path, help="a trained teacher checkpoint (skips training)")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "prune-distill-fmnist.yaml")
    parser.add_argument("--bundle", type=Path, help="reuse this compress bundle (same teacher) instead of running")
    parser.add_argument("--small-student", default=SMALL_STUDENT, help="e.g. builtin:mobilenetv3s_32")
    parser.add_argument("--small-epochs", type=int, default=2)
    parser.add_argument("--small-steps", type=int, default=0, help="steps per epoch; 0 = full epochs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-small", action="store_true")
    args = parser.parse_args()
    teacher_path = (args.teacher_checkpoint
                    or teacher_checkpoint(args.teacher, args.teacher_epochs, steps=None, fast=True)).resolve()
    teacher = load_checkpoint(teacher_path)
    data = load_data("fashion-mnist", image_size=teacher.spec.hw)

    if args.bundle:
        bundle = args.bundle
        manifest = json.loads((bundle / "manifest.json").read_text())
    else:
        bundle = args.out / "bundles" / "prune_distill_fmnist"
        manifest = compress(CompressOptions(model=str(teacher_path), data="fashion-mnist", recipe=str(args.recipe),
                                            target="x86-cpu", out=bundle, force=True, threads=args.threads)).as_json()
    student = load_checkpoint(bundle / "artifacts" / "model.pt")  # the shipped file, weights_only=True
    teacher_top1 = evaluate_module(teacher.module, teacher.spec, data.test)["top1"]
    student_top1 = evaluate_module(student.module, student.spec, data.test)["top1"]
    latency = {}
    for batch in (1, 32):
        lat = ort_latency_interleaved({"teacher": (teacher.module, teacher.spec),
                                       "student": (student.module, student.spec)},
                                      batch=batch, threads=args.threads, rounds=30, runs_per_round=10)
        latency[f"batch{batch}"] = {"teacher_p50_ms": lat["teacher"]["p50_ms"], "student_p50_ms": lat["student"]["p50_ms"],
                                    "teacher_mean_ms": lat["teacher"]["mean_ms"],
                                    "student_mean_ms": lat["student"]["mean_ms"],
                                    "speedup_p50": round(lat["teacher"]["p50_ms"] / lat["student"]["p50_ms"], 3)}
    prune_metrics = manifest["stages"][0]["metrics"]
    distill_metrics = manifest["stages"][1]["metrics"]
    result = {
        "recipe": manifest["recipe"]["name"],
        "teacher": {"source": teacher.source if args.teacher_checkpoint else args.teacher, "checkpoint": str(teacher_path.relative_to(ROOT)), "notes": teacher.notes,
                    "test_top1": teacher_top1, "params": count_params(teacher.module),
                    "macs": count_macs(teacher.module, teacher.spec)},
        "pruned_distilled": {"test_top1": student_top1, "params": count_params(student.module),
                             "macs": count_macs(student.module, student.spec),
                             "macs_fraction": round(count_macs(student.module, student.spec)
                                                    / count_macs(teacher.module, teacher.spec), 4),
                             "distill_seconds": distill_metrics["seconds"],
                             "teacher_logits": distill_metrics["teacher_logits"],
                             "prune_steps": prune_metrics["steps_taken"]},
        "ort_latency_interleaved": latency, "threads": args.threads, "host": manifest["host"],
        "load_average": os.getloadavg(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    result["bars"] = {
        "macs<=50%": result["pruned_distilled"]["macs_fraction"] <= 0.5,
        "top1_within_1pt": teacher_top1 - student_top1 <= 1.0,
        "ort_speedup>=1.6_batch1": latency["batch1"]["speedup_p50"] >= 1.6,
        "ort_speedup>=1.6_batch32": latency["batch32"]["speedup_p50"] >= 1.6,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out_json = args.out / "prune_distill_fmnist.json"
    out_json.write_text(json.dumps(result, indent=2))
    if not args.skip_small:
        small = small_student_comparison(teacher, data, epochs=args.small_epochs, steps=args.small_steps or None,
                                         student=args.small_student)
        result["small_student"] = small
        result["bars"]["kd_beats_scratch"] = small["distilled_test_top1"] > small["scratch_test_top1"]
    out_json.write_text(json.dumps(result, indent=2))
    (args.out / "prune_distill_fmnist.md").write_text(_markdown(result))
    print(json.dumps(result, indent=2))


def _markdown(r: dict) -> str:
    t, s = r["teacher"], r["pruned_distilled"]
    lines = ["# Issue 3: prune + distill on Fashion-MNIST", "",
             f"Teacher {t['source']} ({t['notes'].get('weights', '')}); recipe {r.get('recipe')}.", "",
             f"Host {r['host']['cpu']} ({r['host']['cores']} cores){', ' + r['date'] if 'date' in r else ''}; "
             f"ONNX Runtime FP32, {r['threads']} thread(s), teacher and student interleaved; load average "
             f"{', '.join(f'{x:.2f}' for x in r['load_average'])}.", "",
             "| model | test top-1 | params | MACs |", "|---|---|---|---|",
             f"| teacher | {t['test_top1']:.2f} | {t['params']} | {t['macs']} |",
             f"| pruned + distilled | {s['test_top1']:.2f} | {s['params']} | {s['macs']} ({s['macs_fraction']:.1%}) |",
             "", "| batch | teacher p50 ms | student p50 ms | speed-up |", "|---|---|---|---|"]
    for b, v in r["ort_latency_interleaved"].items():
        lines.append(f"| {b[5:]} | {v['teacher_p50_ms']:.4f} | {v['student_p50_ms']:.4f} | {v['speedup_p50']:.2f}x |")
    if "small_student" in r:
        sm = r["small_student"]
        lines += ["", f"Small student {sm['student']} ({sm['params']} params, {sm['macs']} MACs), "
                  f"{sm['epochs']} epochs x {sm['steps_per_epoch'] or 'all'} steps of 128: distilled {sm['distilled_test_top1']:.2f} "
                  f"vs scratch {sm['scratch_test_top1']:.2f} test top-1."]
    lines += ["", "Bars: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in r["bars"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--render"]:  # re-render the markdown from the JSON of the last run
        out = ROOT / "benchmarks" / "results"
        (out / "prune_distill_fmnist.md").write_text(_markdown(json.loads((out / "prune_distill_fmnist.json").read_text())))
    else:
        main()
