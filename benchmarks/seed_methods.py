"""Issue-17 bars on Fashion-MNIST (full test split): low-rank + KD, robustness with and without
defensive distillation, greedy soups, KD from an ensemble of 2 teachers.

    PYTHONPATH=. nice -n 10 python benchmarks/seed_methods.py            # the real run (long)
    PYTHONPATH=. python benchmarks/seed_methods.py --quick               # smoke test: a few hundred images, 1 epoch

1. ``lowrank`` to <= 50% of the MACs + KD (through ``compress``): top-1 within 1.0 point of the teacher,
   ONNX Runtime latency >= 1.4x lower (same batch and threads, interleaved); INT8 on OpenVINO and LiteRT
   with agreement against the FP32 PyTorch model.
2. Robustness (eps 0, 2/255, 8/255; FGSM and PGD; three corruptions x 3 severities) for the teacher, the
   pruned + KD student and its INT8 artifact, and a pruned + defensively distilled student (same epochs).
3. A greedy soup of 3 fine-tunes: soup val >= best ingredient val; test top-1 of each.
4. KD into one student from an ensemble of 2 teachers vs from the better single teacher (same init, epochs).

Writes benchmarks/results/seed_methods{,_quick}.{json,md}. Quick numbers are a smoke test, not results.
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
from _teacher import resnet18_teacher, teacher_checkpoint  # noqa: E402

from edgekit.data import load_data  # noqa: E402
from edgekit.models import load_checkpoint, load_model, save_checkpoint  # noqa: E402
from edgekit.pipeline import CompressOptions, compress  # noqa: E402
from edgekit.models.complexity import count_macs, count_params  # noqa: E402
from edgekit.profiling.latency import host_identity  # noqa: E402
from edgekit.pruning.measure import ort_latency_interleaved  # noqa: E402
from edgekit.reports.robustness import robustness_markdown  # noqa: E402
from edgekit.runtime.identity import describe_host  # noqa: E402
from edgekit.stages import STAGES, StageContext  # noqa: E402
from edgekit.target import load_target  # noqa: E402
from edgekit.training import TrainParams, evaluate_module, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROBUSTNESS = {"eps": [0.0, 2 / 255, 8 / 255], "attacks": ["fgsm", "pgd"],
              "corruptions": ["gaussian_noise", "blur", "contrast"], "severities": [1, 2, 3]}

FULL = {"data": "fashion-mnist", "epochs": 3, "steps": None, "min_steps": None, "soup_epochs": 1, "robust_limit": 10000,
        "student": "builtin:resnet8", "second_teacher": ("builtin:resnet20", 3), "threads": 2}
QUICK = {"data": "fashion-mnist?train=600&val=200&test=300", "epochs": 1, "steps": None, "min_steps": 40, "soup_epochs": 1,
         "robust_limit": 300, "student": "builtin:tinycnn?width=16", "threads": 1}


def quick_teacher(cache: Path, seed: int, source: str = "builtin:resnet8") -> Path:
    """A 1-epoch teacher on the quick subset (a smoke test needs a trained model, not a good one)."""
    path = cache / f"quick-teacher-{source.split(':')[1]}-s{seed}.pt"
    if not path.exists():
        torch.manual_seed(seed)
        model = load_model(source, num_classes=10)
        train(model.module, model.spec, load_data(QUICK["data"]),
              TrainParams(epochs=1, min_steps=150, lr=0.05, warmup_epochs=1, seed=seed))
        save_checkpoint(model, path)
    return path


def _recipe(path: Path, name: str, stages: list, precisions: list[str], backends: list[str] | None = None,
            robustness: dict | None = None) -> Path:
    import yaml

    data = {"name": name, "stages": stages, "compile": {"precisions": precisions, **({"backends": backends}
                                                                                      if backends else {})},
            "profile": {"runs": 50, "max_seconds": 3}}
    if robustness:
        data["robustness"] = robustness
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _train_settings(cfg: dict) -> dict:
    return {"epochs": cfg["epochs"], "max_steps_per_epoch": cfg["steps"], "min_steps": cfg["min_steps"], "lr": 0.02,
            "crop_pad": 2}


def _run(cfg, teacher_path: Path, recipe: Path, out: Path) -> dict:
    manifest = compress(CompressOptions(model=str(teacher_path), data=cfg["data"], recipe=str(recipe),
                                        target="x86-cpu", out=out, force=True, threads=cfg["threads"]))
    return {**manifest.model_dump(mode="json"), "bundle": manifest.bundle}


def lowrank_section(cfg, teacher_path, teacher, data, work: Path, method: str) -> dict:
    recipe = _recipe(work / "lowrank.yaml", "seed-lowrank-distill",
                     [{"lowrank": {"method": method, "macs": 0.5, "round_to": 8}},
                      {"distill": {"student": "self", "loss": "kd", "temperature": 4, "alpha": 0.9,
                                   **_train_settings(cfg)}}],
                     ["fp32", "int8"], ["onnxruntime", "openvino", "tflite"])
    manifest = _run(cfg, teacher_path, recipe, work / "bundle-lowrank")
    student = load_checkpoint(Path(manifest["bundle"]) / "artifacts" / "model.pt")  # weights_only round trip
    latency = {}
    for batch in (1, 32):
        lat = ort_latency_interleaved({"teacher": (teacher.module, teacher.spec), "student": (student.module, student.spec)},
                                      batch=batch, threads=cfg["threads"], rounds=30, runs_per_round=10)
        latency[f"batch{batch}"] = {"teacher_p50_ms": lat["teacher"]["p50_ms"], "student_p50_ms": lat["student"]["p50_ms"],
                                    "speedup_p50": round(lat["teacher"]["p50_ms"] / lat["student"]["p50_ms"], 3)}
    stage = next(s for s in manifest["stages"] if s["name"] == "lowrank")["metrics"]
    artifacts = [{"name": a["name"], "precision": a["precision"], "top1": a["metrics"].get("accuracy", {}).get("top1"),
                  "agreement": a["metrics"].get("agreement", {}).get("top1_agreement")} for a in manifest["artifacts"]]
    return {"method": method, "rank_ratio": stage.get("rank_ratio_chosen"), "factorized_layers": stage["factorized"],
            "macs_fraction": round(stage["macs_after"] / stage["macs_before"], 4),
            "params": count_params(student.module), "macs": count_macs(student.module, student.spec),
            "test_top1": evaluate_module(student.module, student.spec, data.test)["top1"],
            "stage_ort_speedup_p50": stage.get("ort_latency", {}).get("speedup_p50"),
            "ort_latency_interleaved": latency, "artifacts": artifacts}


def robustness_section(cfg, teacher_path, work: Path) -> dict:
    rob = {**ROBUSTNESS, "limit": cfg["robust_limit"]}
    prune = {"prune": {"mode": "structured", "macs": 0.5}}
    plain = _run(cfg, teacher_path, _recipe(work / "prune-kd.yaml", "seed-prune-kd", [
        prune, {"distill": {"student": "self", "loss": "kd", **_train_settings(cfg)}}], ["fp32", "int8"],
        ["onnxruntime", "openvino"], rob), work / "bundle-prune-kd")
    defensive = _run(cfg, teacher_path, _recipe(work / "prune-defensive.yaml", "seed-prune-defensive", [
        prune, {"distill": {"student": "self", "defensive": True, "temperature": 20, **_train_settings(cfg)}}],
        ["fp32"], ["onnxruntime"], rob), work / "bundle-prune-defensive")
    rows = plain["robustness"]["models"] + [{**r, "model": f"defensive: {r['model']}"}
                                            for r in defensive["robustness"]["models"] if r["model"] != "input model"]
    section = {**plain["robustness"], "models": rows}
    final_plain, final_def = plain["robustness"]["models"][1], defensive["robustness"]["models"][1]
    section["fgsm_with_without_defensive"] = {"eps": rob["eps"], "kd": final_plain["attacks"]["fgsm"],
                                              "defensive": final_def["attacks"]["fgsm"]}
    return section


def soup_section(cfg, teacher_path, work: Path) -> dict:
    manifest = _run(cfg, teacher_path, _recipe(work / "soup.yaml", "seed-soup", [
        {"soup": {"ingredients": 3, "vary": ["seed", "lr"], "mode": "greedy", "epochs": cfg["soup_epochs"],
                  "max_steps_per_epoch": cfg["steps"], "min_steps": cfg["min_steps"], "lr": 0.01}}], ["fp32"], ["onnxruntime"]), work / "bundle-soup")
    return next(s for s in manifest["stages"] if s["name"] == "soup")["metrics"]


def ensemble_section(cfg, teachers: list[Path], data, work: Path) -> dict:
    loaded = [load_checkpoint(p) for p in teachers]
    vals = [evaluate_module(t.module, t.spec, data.val)["top1"] for t in loaded]
    best = int(max(range(len(vals)), key=lambda i: vals[i]))
    Distill = STAGES.get("distill")
    out = {"teachers": [{"checkpoint": str(p), "val_top1": v,
                         "test_top1": evaluate_module(t.module, t.spec, data.test)["top1"]}
                        for p, t, v in zip(teachers, loaded, vals)], "student": cfg["student"]}
    for label, teacher in (("best_single", str(teachers[best])), ("ensemble", [str(p) for p in teachers])):
        params = Distill.Params(teacher=teacher, student=cfg["student"], student_input_size=(28, 28), loss="kd",
                                temperature=4, alpha=0.9, augment=False, lr=0.05, epochs=cfg["epochs"],
                                max_steps_per_epoch=cfg["steps"], min_steps=cfg["min_steps"], keep="last")
        torch.manual_seed(0)  # same student initialisation for both runs
        ctx = StageContext(model=loaded[best], teacher=loaded[best], data=data, target=load_target("x86-cpu"),
                           work_dir=work / f"work-{label}")
        result = Distill(params).run(ctx)
        out[label] = {"test_top1": evaluate_module(result.model.module, result.model.spec, data.test)["top1"],
                      "teacher_logits": result.metrics["teacher_logits"], "teacher_val_top1": result.metrics["val_top1_teacher"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: a few hundred images, 1 epoch")
    parser.add_argument("--method", default="spatial_svd", choices=["svd", "spatial_svd", "tucker"])
    parser.add_argument("--only", nargs="*", choices=["lowrank", "robustness", "soup", "ensemble"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only rewrite the .md of a results .json")
    args = parser.parse_args()
    if args.render:
        args.render.with_suffix(".md").write_text(markdown(json.loads(args.render.read_text())))
        return
    cfg = QUICK if args.quick else FULL
    work = ROOT / "benchmarks" / "cache" / ("seed_methods_quick" if args.quick else "seed_methods")
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        teacher_path, second = quick_teacher(work, 0), quick_teacher(work, 1, "builtin:resnet8")
    else:
        teacher_path, second = resnet18_teacher(), teacher_checkpoint(*cfg["second_teacher"], steps=None, fast=True)
    teacher = load_checkpoint(teacher_path)
    data = load_data(cfg["data"], image_size=teacher.spec.hw)
    sections = args.only or ["lowrank", "robustness", "soup", "ensemble"]
    result = {"mode": "quick (smoke test, not results)" if args.quick else "full", "data": data.summary(),
              "teacher": {"checkpoint": str(teacher_path), "notes": teacher.notes,
                          "test_top1": evaluate_module(teacher.module, teacher.spec, data.test)["top1"],
                          "macs": count_macs(teacher.module, teacher.spec), "params": count_params(teacher.module)},
              "host": host_identity(), "threads": cfg["threads"], "date": dt.datetime.now(dt.timezone.utc).isoformat(
                  timespec="seconds")}
    if "lowrank" in sections:
        result["lowrank"] = lowrank_section(cfg, teacher_path, teacher, data, work, args.method)
    if "robustness" in sections:
        result["robustness"] = robustness_section(cfg, teacher_path, work)
    if "soup" in sections:
        result["soup"] = soup_section(cfg, teacher_path, work)
    if "ensemble" in sections:
        result["ensemble"] = ensemble_section(cfg, [teacher_path, second], data, work)
    result["load_average"] = os.getloadavg()
    result["bars"] = bars(result)
    stem = "seed_methods_quick" if args.quick else "seed_methods"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


def bars(r: dict) -> dict:
    out = {}
    if "lowrank" in r:
        lr = r["lowrank"]
        out["lowrank macs<=50%"] = lr["macs_fraction"] <= 0.5
        out["lowrank top1 within 1pt"] = r["teacher"]["test_top1"] - lr["test_top1"] <= 1.0
        out["lowrank ORT speed-up >= 1.4x (batch 1)"] = lr["ort_latency_interleaved"]["batch1"]["speedup_p50"] >= 1.4
        out["lowrank INT8 on OpenVINO and LiteRT"] = {a["name"].split("-")[0] for a in lr["artifacts"]
                                                       if a["precision"] == "int8"} >= {"openvino", "tflite"}
    if "soup" in r:
        s = r["soup"]
        out["greedy soup val >= best ingredient val"] = s["soup_val_top1"] >= max(i["val_top1"] for i in s["ingredients"])
    if "ensemble" in r:
        out["ensemble KD >= best single-teacher KD (reported either way)"] = (r["ensemble"]["ensemble"]["test_top1"]
                                                                               >= r["ensemble"]["best_single"]["test_top1"])
    return out


def _pct(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def markdown(r: dict) -> str:
    t = r["teacher"]
    lines = ["# Issue 17: low-rank, robustness, soups, ensemble teachers on Fashion-MNIST", ""]
    if r["mode"].startswith("quick"):
        lines += ["**Smoke test (`--quick`): a few hundred images, 1 epoch. These numbers say the benchmark runs, "
                  "nothing about the methods.**", ""]
    lines += [f"Data {r['data']['source']} (train {r['data']['train']}, val {r['data']['val']}, test {r['data']['test']}); "
              f"host {describe_host(r['host'])}, {r['threads']} thread(s), {r['date']}.", "",
              f"Teacher {t['checkpoint'].split('/')[-1]}: test top-1 {t['test_top1']:.2f}%, {t['macs']} MACs, "
              f"{t['params']} params.", ""]
    if "lowrank" in r:
        lr = r["lowrank"]
        lines += ["## Low-rank + KD", "",
                  f"{lr['method']}, global rank ratio {lr['rank_ratio']}, {lr['factorized_layers']} layers factorized, "
                  f"{lr['macs_fraction']:.1%} of MACs; test top-1 {lr['test_top1']:.2f}% (teacher {t['test_top1']:.2f}%).", "",
                  "| batch | teacher p50 ms | low-rank p50 ms | speed-up |", "|---|---|---|---|"]
        for b, v in lr["ort_latency_interleaved"].items():
            lines.append(f"| {b[5:]} | {v['teacher_p50_ms']:.4f} | {v['student_p50_ms']:.4f} | {v['speedup_p50']:.2f}x |")
        lines += ["", "| artifact | top-1 | agreement with PyTorch % |", "|---|---|---|"]
        for a in lr["artifacts"]:
            lines.append(f"| {a['name']} | {_pct(a['top1'])} | {_pct(a['agreement'])} |")
        lines.append("")
    if "robustness" in r:
        lines += [robustness_markdown(r["robustness"]).replace("## Robustness", "## Robustness (prune + KD vs prune + "
                                                                                 "defensive distillation)"), ""]
        f = r["robustness"]["fgsm_with_without_defensive"]
        lines += ["FGSM top-1 of the final model, without / with defensive distillation: " + ", ".join(
            f"eps {e:.4f}: {a:.2f} / {b:.2f}" for e, a, b in zip(f["eps"], f["kd"], f["defensive"])), ""]
    if "soup" in r:
        s = r["soup"]
        lines += ["## Greedy soup", "", "| ingredient | val top-1 | test top-1 |", "|---|---|---|"]
        for i in s["ingredients"]:
            lines.append(f"| {i['ingredient']} | {i['val_top1']:.2f} | {i['test_top1']:.2f} |")
        lines += [f"| **soup** ({len(s['chosen'])} chosen) | {s['soup_val_top1']:.2f} | {s['soup_test_top1']:.2f} |",
                  "", f"BatchNorm: {s['batchnorm']}.", ""]
    if "ensemble" in r:
        e = r["ensemble"]
        lines += ["## KD from an ensemble of 2 teachers", "", f"Student {e['student']}, same init and epochs.", "",
                  "| teacher(s) | student test top-1 |", "|---|---|",
                  f"| best single teacher | {e['best_single']['test_top1']:.2f} |",
                  f"| ensemble of 2 | {e['ensemble']['test_top1']:.2f} |", "",
                  "Teachers: " + "; ".join(f"{x['checkpoint'].split('/')[-1]} val {x['val_top1']:.2f} test "
                                           f"{x['test_top1']:.2f}" for x in e["teachers"]), ""]
    lines += ["Bars: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in r["bars"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
