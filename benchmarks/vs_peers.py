"""edgekit vs the peers glued by hand (issue 7): one ``edgekit compress`` against NNCF, onnxruntime
and torch-pruning used directly, on the same teacher, data and machine, measured in one run.

Teacher: torchvision ResNet-18 for 32 px (3x3 stride-1 stem, no max-pool; ``builtin:resnet18_32``)
trained 3 epochs on Fashion-MNIST (cached in benchmarks/cache/; ``--teacher`` takes a checkpoint).
By-hand paths use the libraries' own APIs as their docs show them: ``ov.convert_model`` + NNCF
``nncf.quantize``, ``torch.onnx.export`` + ``onnxruntime.quantization.quantize_static`` (QDQ, U8
activations, per-channel), torch-pruning's ``MetaPruner`` to 50% of MACs + a plain PyTorch training
loop (cross-entropy, or Hinton KD T=4 alpha=0.9). Data loading and augmentation (crop pad 2 + flip)
are shared with edgekit so that only the compression path differs. The edgekit path is the CLI
with the x86-cpu target's default recipe: ``edgekit compress -m TEACHER -d fashion-mnist -t x86-cpu``
and the artifact its manifest says to deploy.

Every path's top-1 is measured through its own runtime on the full 10k test split. Batch-1
latency is measured interleaved: in each round every path runs warm-up + timed calls, so machine
noise hits all paths alike; p50/p90 pool all rounds. Trained peers and the edgekit bundle are cached
(benchmarks/cache/vs_peers/); ``--fresh`` rebuilds them. Run on an otherwise idle machine:

    PYTHONPATH=. python benchmarks/vs_peers.py [--threads 2] [--rounds 20] [--teacher PATH] [--fresh]

Writes benchmarks/results/vs_peers.{json,md,svg}.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _teacher import teacher_checkpoint  # noqa: E402

from edgekit.data import load_data  # noqa: E402
from edgekit.data.core import make_loader  # noqa: E402
from edgekit.models import load_checkpoint, save_checkpoint  # noqa: E402
from edgekit.models.complexity import count_macs  # noqa: E402
from edgekit.profiling.latency import host_identity  # noqa: E402
from edgekit.runtime import interleaved_latency  # noqa: E402
from edgekit.training.augment import random_crop_flip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "cache" / "vs_peers"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class PathResult:
    """One way of getting from the teacher to something deployable."""
    name: str
    run: Callable[[np.ndarray], np.ndarray]          # batch of prepared inputs -> logits
    bytes: int
    macs: int
    produce_seconds: float                            # wall time to make it (training + conversion)
    by: str                                           # "peers" or "edgekit"
    notes: dict = field(default_factory=dict)
    top1: float | None = None
    samples_ms: list[float] = field(default_factory=list)


# ---------------------------------------------------------------- runtimes, used as their docs show
def ov_runner(xml: Path, threads: int, f32_hint: bool):
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if f32_hint:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(str(xml), "CPU", config)
    request, output = compiled.create_infer_request(), compiled.output(0)
    return lambda x: request.infer({0: x})[output]


def ort_runner(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def torch_runner(module: nn.Module):
    module = module.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


def ov_fp32(module: nn.Module, out: Path) -> Path:
    import openvino as ov

    xml = out / "model_fp32.xml"
    if not xml.exists():
        ov_model = ov.convert_model(module.eval(), example_input=torch.zeros(1, 3, 32, 32), input=[(-1, 3, 32, 32)])
        ov.save_model(ov_model, str(xml), compress_to_fp16=False)
    return xml


def ov_int8_nncf(module: nn.Module, calibration: np.ndarray, out: Path) -> Path:
    import nncf
    import openvino as ov

    xml = out / "model_int8.xml"
    if not xml.exists():
        ov_model = ov.convert_model(module.eval(), example_input=torch.zeros(1, 3, 32, 32), input=[(-1, 3, 32, 32)])
        dataset = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
        ov.save_model(nncf.quantize(ov_model, dataset, subset_size=len(calibration)), str(xml))
    return xml


def ort_int8_qdq(module: nn.Module, calibration: np.ndarray, out: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    fp32, int8 = out / "model_fp32.onnx", out / "model_int8.onnx"
    if not int8.exists():
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(module.eval(), (torch.zeros(2, 3, 32, 32),), str(fp32), dynamo=True, external_data=False,
                          input_names=["input"], dynamic_shapes={"x": {0: batch}})

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter({"input": calibration[i:i + 1]} for i in range(len(calibration)))

            def get_next(self):
                return next(self.items, None)

        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return int8


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in [path, path.with_suffix(".bin")] if p.exists())


# ---------------------------------------------------------------- torch-pruning + a plain training loop
def prune_half_macs(module: nn.Module) -> nn.Module:
    """torch-pruning as its README shows: MetaPruner, L2 magnitude, iterative steps until <= 50% MACs."""
    import torch_pruning as tp

    model = copy.deepcopy(module).eval()
    example = torch.zeros(1, 3, 32, 32)
    base, _ = tp.utils.count_ops_and_params(model, example)
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=0.6, iterative_steps=30, ignored_layers=[model.fc])
    for _ in range(30):
        pruner.step()
        if tp.utils.count_ops_and_params(model, example)[0] <= 0.5 * base:
            break
    return model


def fit(model: nn.Module, spec, data, epochs: int, teacher: nn.Module | None = None, lr: float = 0.05,
        temperature: float = 4.0, alpha: float = 0.9) -> float:
    """SGD + one-cycle, bf16 autocast, channels_last (the same speed settings edgekit uses); KD when a
    teacher is given. Returns seconds."""
    start = time.perf_counter()
    torch.manual_seed(0)
    loader = make_loader(data.train, 128, shuffle=True, seed=0, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(loader))
    model.to(memory_format=torch.channels_last).train()
    if teacher is not None:
        teacher.to(memory_format=torch.channels_last).eval()
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        for step, (images, labels) in enumerate(loader):
            x = random_crop_flip(spec.prepare(images), 2, True, gen).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(x).float()
                loss = F.cross_entropy(logits, labels)
                if teacher is not None:
                    with torch.no_grad():
                        soft = F.softmax(teacher(x).float() / temperature, dim=1)
                    kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean")
                    loss = alpha * temperature ** 2 * kd + (1 - alpha) * loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % 100 == 0:
                print(f"    epoch {epoch + 1}/{epochs} step {step}/{len(loader)} loss {float(loss):.4f}", flush=True)
    model.to(memory_format=torch.contiguous_format).eval()
    if teacher is not None:
        teacher.to(memory_format=torch.contiguous_format)
    return time.perf_counter() - start


def pruned_trained(teacher, data, kind: str, epochs: int) -> tuple[nn.Module, float]:
    """Pruned + fine-tuned (kind 'ce') or distilled ('kd') copy of the teacher (a LoadedModel). Cached
    as an edgekit checkpoint (architecture + resized weights) because torch-pruning's own
    ``tp.state_dict`` pickles module objects, which ``torch.load(weights_only=True)`` refuses."""
    path = CACHE / f"pruned50-{kind}-e{epochs}.pt"
    seconds_file = path.with_suffix(".seconds")
    if path.exists() and seconds_file.exists():
        return load_checkpoint(path).module.eval(), float(seconds_file.read_text())
    start = time.perf_counter()
    model = prune_half_macs(teacher.module)
    print(f"  by hand: pruned to {count_macs(model, teacher.spec) / count_macs(teacher.module, teacher.spec):.1%} "
          f"of MACs; {kind} {epochs} epochs", flush=True)
    fit(model, teacher.spec, data, epochs, teacher=copy.deepcopy(teacher.module) if kind == "kd" else None)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(replace(teacher, module=model), path)
    seconds_file.write_text(f"{seconds:.1f}")
    return model, seconds


# ---------------------------------------------------------------- the edgekit path
def edgekit_bundle(teacher_path: Path, threads: int, fresh: bool) -> tuple[Path, float]:
    """``edgekit compress`` with the target's default recipe; cold (--no-cache), timed end to end."""
    bundle = CACHE / "edgekit-x86-cpu"
    timing = CACHE / "edgekit-x86-cpu.seconds.json"
    if fresh or not (bundle / "manifest.json").exists() or not timing.exists():
        command = [sys.executable, "-m", "edgekit", "compress", "-m", str(teacher_path), "-d", "fashion-mnist",
                   "-t", "x86-cpu", "-o", str(bundle), "--force", "--no-cache", "--threads", str(threads)]
        print("  " + " ".join(command[1:]), flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        timing.write_text(json.dumps({"seconds": time.perf_counter() - start, "command": command[1:]}))
    return bundle, json.loads(timing.read_text())["seconds"]


def edgekit_path(bundle: Path, seconds: float, threads: int) -> PathResult:
    from edgekit.backends import BACKENDS
    from edgekit.backends.base import Artifact

    manifest = json.loads((bundle / "manifest.json").read_text())
    name = manifest["deploy"]["artifact"]
    artifact = Artifact(**next(a for a in manifest["artifacts"] if a["name"] == name))
    session = BACKENDS.get(artifact.backend)().load(artifact, bundle, threads)
    refs = manifest.get("references") or {"final": manifest["reference"]}   # bundles before issue 14: one reference
    inp = refs.get("input")
    return PathResult(f"edgekit compress -t x86-cpu → {name}", session.run, artifact.bytes,
                      refs["final"]["macs"], seconds, "edgekit",
                      notes={"recipe": manifest["recipe"]["name"], "deploy": manifest["deploy"],
                             "stages": [s.get("name") for s in manifest["stages"]],
                             # Δ vs the teacher as the bundle itself measured it: the deployed artifact against
                             # the manifest's input reference (the teacher is the input model)
                             "manifest_delta_vs_teacher": (None if inp is None or manifest["deploy"].get("drop") is None
                                                           else -manifest["deploy"]["drop"]),
                             "manifest_teacher_top1": inp["accuracy"]["top1"] if inp else None})


# ---------------------------------------------------------------- measuring
def prepared(ds, spec, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for images, labels in make_loader(ds, 500, shuffle=False):
        xs.append(spec.prepare(images).numpy())
        ys.append(labels.numpy())
    x, y = np.concatenate(xs).astype(np.float32), np.concatenate(ys)
    return (x[:limit], y[:limit]) if limit else (x, y)


def top1(run, x: np.ndarray, y: np.ndarray, batch: int = 100) -> float:
    hits = sum(int((np.asarray(run(x[i:i + batch])).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return 100.0 * hits / len(x)


def interleave_latency(paths: list[PathResult], sample: np.ndarray, rounds: int, runs: int = 50) -> None:
    """Every path each round (3 untimed + ``runs`` timed calls), so machine noise hits all alike."""
    lat = interleaved_latency({p.name: p.run for p in paths}, sample, rounds=rounds, runs_per_round=runs, warmup=20,
                              round_warmup=3, keep_samples=True,
                              on_round=lambda r: print(f"  latency round {r + 1}/{rounds}", flush=True))
    for p in paths:
        p.samples_ms = lat[p.name]["samples_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, help="edgekit checkpoint of the teacher [default: train and cache]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--peer-epochs", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="retrain the peers and rerun edgekit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.fresh and CACHE.exists():
        shutil.rmtree(CACHE)
    CACHE.mkdir(parents=True, exist_ok=True)

    teacher_path = args.teacher or teacher_checkpoint("builtin:resnet18_32", epochs=3, steps=None, fast=True)
    teacher = load_checkpoint(teacher_path)
    spec, module = teacher.spec, teacher.module.eval()
    data = load_data("fashion-mnist", image_size=spec.hw)
    x_test, y_test = prepared(data.test, spec)
    picks = np.random.default_rng(0).choice(len(data.train), 300, replace=False)
    calibration = prepared(data.train.subset(picks), spec)[0]
    teacher_macs, fp32_bytes = count_macs(module, spec), sum(p.numel() * 4 for p in module.parameters())

    print("edgekit compress (default x86-cpu recipe)", flush=True)
    bundle, edgekit_seconds = edgekit_bundle(teacher_path, args.threads, args.fresh)

    print("by-hand paths", flush=True)
    paths: list[PathResult] = []
    d = CACHE / "teacher"
    d.mkdir(exist_ok=True)
    paths.append(PathResult("teacher, torch eager FP32", torch_runner(module), fp32_bytes, teacher_macs, 0, "peers"))
    xml = ov_fp32(module, d)
    paths.append(PathResult("teacher, OpenVINO FP32 (f32 hint)", ov_runner(xml, args.threads, True), file_bytes(xml),
                            teacher_macs, 0, "peers"))
    start = time.perf_counter()
    onnx_int8 = ort_int8_qdq(module, calibration, d)
    paths.append(PathResult("teacher, ONNX Runtime INT8 QDQ (U8 act, per-channel, 300 calib)",
                            ort_runner(onnx_int8, args.threads), onnx_int8.stat().st_size, teacher_macs,
                            time.perf_counter() - start, "peers"))
    start = time.perf_counter()
    xml = ov_int8_nncf(module, calibration, d)
    paths.append(PathResult("teacher, OpenVINO INT8 (nncf.quantize, 300 calib)", ov_runner(xml, args.threads, False),
                            file_bytes(xml), teacher_macs, time.perf_counter() - start, "peers"))
    for kind, label in (("ce", "CE fine-tune"), ("kd", "KD (T=4, α=0.9)")):
        pruned, seconds = pruned_trained(teacher, data, kind, args.peer_epochs)
        out = CACHE / f"pruned50-{kind}"
        out.mkdir(exist_ok=True)
        start = time.perf_counter()
        xml = ov_int8_nncf(pruned, calibration, out)
        paths.append(PathResult(f"torch-pruning 50% MACs + {args.peer_epochs} epochs {label} → OpenVINO INT8",
                                ov_runner(xml, args.threads, False), file_bytes(xml), count_macs(pruned, spec),
                                seconds + time.perf_counter() - start, "peers"))
    paths.append(edgekit_path(bundle, edgekit_seconds, args.threads))

    print("accuracy on the full test split, through each runtime", flush=True)
    for p in paths:
        p.top1 = top1(p.run, x_test, y_test)
        print(f"  {p.name}: {p.top1:.2f}%", flush=True)
    interleave_latency(paths, x_test[:1], args.rounds)
    results = summarize(paths, teacher_path, fp32_bytes, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "vs_peers.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / "vs_peers.md").write_text(markdown(results))
    plot(results, RESULTS / "vs_peers.svg")
    print(markdown(results))


def summarize(paths: list[PathResult], teacher_path: Path, fp32_bytes: int, args) -> dict:
    teacher_top1 = paths[0].top1
    rows = [{"path": p.name, "by": p.by, "top1": round(p.top1, 2), "delta_vs_teacher": round(p.top1 - teacher_top1, 2),
             "p50_ms": round(float(np.percentile(p.samples_ms, 50)), 4),
             "p90_ms": round(float(np.percentile(p.samples_ms, 90)), 4), "mb": round(p.bytes / 1e6, 2),
             "mmacs": round(p.macs / 1e6, 1), "produce_minutes": round(p.produce_seconds / 60, 1), "notes": p.notes}
            for p in paths]
    ours = next(r for r in rows if r["by"] == "edgekit")
    if ours["notes"].get("manifest_delta_vs_teacher") is not None:   # the manifest's own input-reference Δ
        ours["delta_vs_teacher_here"] = ours["delta_vs_teacher"]
        ours["delta_vs_teacher"] = round(ours["notes"]["manifest_delta_vs_teacher"], 2)
    best_peer = min((r for r in rows if r["by"] == "peers"), key=lambda r: r["p50_ms"])
    bars = [
        {"bar": "top-1 >= teacher - 0.5 pt", "value": ours["delta_vs_teacher"], "met": ours["delta_vs_teacher"] >= -0.5},
        {"bar": f"p50 <= 1/2 of the best by-hand path ({best_peer['p50_ms']:.3f} ms)",
         "value": round(best_peer["p50_ms"] / ours["p50_ms"], 2), "met": ours["p50_ms"] <= best_peer["p50_ms"] / 2},
        {"bar": "size <= 1/16 of the FP32 teacher", "value": round(fp32_bytes / 1e6 / ours["mb"], 1),
         "met": ours["mb"] <= fp32_bytes / 1e6 / 16},
        {"bar": "compress within 60 minutes", "value": ours["produce_minutes"], "met": ours["produce_minutes"] <= 60},
    ]
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": host_identity(),
            "threads": args.threads, "rounds": args.rounds, "teacher": str(teacher_path), "batch": 1,
            "test_images": 10000, "rows": rows, "bars": bars,
            "command": "PYTHONPATH=. python benchmarks/vs_peers.py"}


def markdown(r: dict) -> str:
    host = r["host"]
    lines = [f"# edgekit vs the peers by hand ({r['date']})", "",
             f"Host: {host.get('cpu')}, {host.get('cores')} cores, {r['threads']} threads, batch 1. Fashion-MNIST, "
             f"full {r['test_images']} test images; latency interleaved over {r['rounds']} rounds. "
             f"Reproduce: `{r['command']}`.", "",
             "| path | top-1 % | Δ vs teacher | p50 ms | p90 ms | MB | MMACs | minutes to produce |",
             "|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        name = f"**{row['path']}**" if row["by"] == "edgekit" else row["path"]
        lines.append(f"| {name} | {row['top1']:.2f} | {row['delta_vs_teacher']:+.2f} | {row['p50_ms']:.3f} | "
                     f"{row['p90_ms']:.3f} | {row['mb']:.2f} | {row['mmacs']:.0f} | {row['produce_minutes']:.1f} |")
    lines += ["", "| bar | value | met |", "|---|---|---|"]
    lines += [f"| {b['bar']} | {b['value']} | {'yes' if b['met'] else '**no**'} |" for b in r["bars"]]
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, row in enumerate(r["rows"]):
        colour = "tab:red" if row["by"] == "edgekit" else "tab:blue"
        ax.scatter(row["p50_ms"], row["top1"], s=20 + 8 * row["mb"], color=colour)
        ax.annotate(str(i + 1), (row["p50_ms"], row["top1"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, batch 1 (ms, log scale)")
    ax.set_ylabel("top-1 % (Fashion-MNIST test)")
    ax.set_title("edgekit (red) vs by-hand peer paths (blue); marker area ~ size on disk")
    ax.text(0.01, 0.01, "\n".join(f"{i + 1}: {row['path']}" for i, row in enumerate(r["rows"])),
            transform=ax.transAxes, fontsize=6, va="bottom")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
