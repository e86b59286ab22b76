"""Issue-17 bars on Fashion-MNIST (full test split): low-rank + KD, robustness with and without
defensive distillation, greedy soups, KD from an ensemble of 2 teachers.

    nice -n 10 python -m benchmarks run seed-methods             # the real run (long)
    python -m benchmarks run seed-methods --quick                # smoke test: a few hundred images, 1 epoch

1. ``lowrank`` to <= 50% of the MACs + KD (through ``compress``): top-1 within 1.0 point of the teacher,
   ONNX Runtime latency >= 1.4x lower (same batch and threads, interleaved); INT8 on OpenVINO and LiteRT
   with agreement against the FP32 PyTorch model.
2. Robustness (eps 0, 2/255, 8/255; FGSM and PGD; three corruptions x 3 severities) for the teacher, the
   pruned + KD student and its INT8 artifact, and a pruned + defensively distilled student (same epochs).
3. A greedy soup of 3 fine-tunes: soup val >= best ingredient val; test top-1 of each.
4. KD into one student from an ensemble of 2 teachers vs from the better single teacher (same init, epochs).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from benchmarks._teacher import resnet18_teacher, teacher_checkpoint
from benchmarks.schema import Measured
from edgekit.data import load_data
from edgekit.errors import EdgekitError
from edgekit.models import load_checkpoint, load_model, save_checkpoint
from edgekit.models.complexity import count_macs, count_params
import edgekit
from edgekit.pruning.measure import ort_latency_interleaved
from edgekit.stages import STAGES, StageContext
from edgekit.target import load_target
from edgekit.training import TrainParams, evaluate_module, train
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
    manifest = edgekit.compress(str(teacher_path), cfg["data"], target="x86-cpu", recipe=str(recipe), out=out,
                                force=True, threads=cfg["threads"]).manifest
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


def run(work: Path, quick: bool = False, method: str = "spatial_svd", only: list[str] | None = None) -> Measured:
    """The kind ``seed_methods``; ``quick``: a smoke test (a few hundred images, 1 epoch; the numbers say the
    benchmark runs, nothing about the methods); ``only``: some of lowrank, robustness, soup, ensemble."""
    if method not in ("svd", "spatial_svd", "tucker"):
        raise EdgekitError(f"unknown low-rank method {method!r}", "one of svd, spatial_svd, tucker")
    cfg = QUICK if quick else FULL
    if quick:
        teacher_path, second = quick_teacher(work, 0), quick_teacher(work, 1, "builtin:resnet8")
    else:
        teacher_path, second = resnet18_teacher(), teacher_checkpoint(*cfg["second_teacher"], steps=None, fast=True)
    teacher = load_checkpoint(teacher_path)
    data = load_data(cfg["data"], image_size=teacher.spec.hw)
    sections = only or ["lowrank", "robustness", "soup", "ensemble"]
    result = {"mode": "quick (smoke test, not results)" if quick else "full", "data": data.summary(),
              "teacher": {"checkpoint": str(teacher_path), "notes": teacher.notes,
                          "test_top1": evaluate_module(teacher.module, teacher.spec, data.test)["top1"],
                          "macs": count_macs(teacher.module, teacher.spec), "params": count_params(teacher.module)},
              "threads": cfg["threads"]}
    if "lowrank" in sections:
        result["lowrank"] = lowrank_section(cfg, teacher_path, teacher, data, work, method)
    if "robustness" in sections:
        result["robustness"] = robustness_section(cfg, teacher_path, work)
    if "soup" in sections:
        result["soup"] = soup_section(cfg, teacher_path, work)
    if "ensemble" in sections:
        result["ensemble"] = ensemble_section(cfg, [teacher_path, second], data, work)
    result["load_average"] = os.getloadavg()
    return summarize(result)


def metrics(r: dict) -> dict:
    """The values the bars read (scenarios.yaml), for the sections that ran."""
    out: dict = {}
    if "lowrank" in r:
        lr = r["lowrank"]
        out["lowrank_macs_fraction"] = lr["macs_fraction"]
        out["lowrank_top1_drop_pt"] = round(r["teacher"]["test_top1"] - lr["test_top1"], 3)
        out["lowrank_ort_speedup_batch1"] = lr["ort_latency_interleaved"]["batch1"]["speedup_p50"]
        out["lowrank_int8_on_openvino_and_litert"] = {a["name"].split("-")[0] for a in lr["artifacts"]
                                                      if a["precision"] == "int8"} >= {"openvino", "tflite"}
    if "soup" in r:
        s = r["soup"]
        out["soup_val_minus_best_ingredient_pt"] = round(s["soup_val_top1"] - max(i["val_top1"] for i in s["ingredients"]), 3)
    if "ensemble" in r:
        e = r["ensemble"]
        out["ensemble_kd_minus_single_kd_pt"] = round(e["ensemble"]["test_top1"] - e["best_single"]["test_top1"], 3)
    return out


def summarize(r: dict) -> Measured:
    """One row per model each section measured; robustness per eps and severity in its columns (lists)."""
    t = r["teacher"]
    rows: list[dict] = [{"section": "teacher", "model": Path(t["checkpoint"]).name, "test_top1": t["test_top1"],
                         "macs": t["macs"], "params": t["params"]}]
    notes = [f"data {r['data']['source']} (train {r['data']['train']}, val {r['data']['val']}, test {r['data']['test']}); "
             f"{r['threads']} thread(s)"]
    if "lowrank" in r:
        lr = r["lowrank"]
        rows.append({"section": "lowrank + KD", "model": f"{lr['method']}, rank ratio {lr['rank_ratio']}",
                     "test_top1": lr["test_top1"], "macs": lr["macs"], "params": lr["params"]})
        rows += [{"section": "lowrank + KD", "model": a["name"], "test_top1": a["top1"], "agreement": a["agreement"]}
                 for a in lr["artifacts"]]
    if "robustness" in r:
        rob = r["robustness"]
        notes.append(f"robustness: eps {', '.join(f'{e:.4f}' for e in rob['eps'])} per attack; corruption severities "
                     f"{rob['severities']}; artifacts get transfer attacks crafted on the final PyTorch model")
        rows += [{"section": "robustness", "model": m["model"], "test_top1": m["clean"],
                  **{a: v for a, v in m["attacks"].items()}, **{c: v for c, v in m["corruptions"].items()}}
                 for m in rob["models"]]
    if "soup" in r:
        s = r["soup"]
        rows += [{"section": "greedy soup", "model": f"ingredient {i['ingredient']}", "val_top1": i["val_top1"],
                  "test_top1": i["test_top1"]} for i in s["ingredients"]]
        rows.append({"section": "greedy soup", "model": f"soup ({len(s['chosen'])} chosen)", "val_top1": s["soup_val_top1"],
                     "test_top1": s["soup_test_top1"]})
    if "ensemble" in r:
        e = r["ensemble"]
        rows += [{"section": "KD from 2 teachers", "model": f"student {e['student']}, {label}",
                  "test_top1": e[key]["test_top1"]} for label, key in (("best single teacher", "best_single"),
                                                                       ("ensemble of 2", "ensemble"))]
    return Measured(rows=rows, metrics=metrics(r), notes=notes,
                    details={k: r[k] for k in ("robustness", "soup", "ensemble", "load_average") if k in r})
