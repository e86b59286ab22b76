"""INT8 vs FP32 through each runtime, on Fashion-MNIST (full 10k test split).

For each model (``quant_train.py`` trains and caches them under benchmarks/cache/): compile FP32 and
INT8 for ONNX Runtime (QDQ), OpenVINO (NNCF) and LiteRT (PT2E), plus the TensorRT QDQ ONNX (accuracy
on ONNX Runtime), then measure top-1 on all 10k test images through each artifact's own runtime,
size on disk, and batch-1 latency with FP32 and INT8 of one runtime *interleaved* (alternating
rounds in one process, so machine contention hits both alike). Bars checked (issue 4): INT8 top-1
within 1.0 point of FP32, INT8 >= 3x smaller, OpenVINO INT8 faster than OpenVINO FP32.

    nice -n 10 python -m benchmarks.quant_bench [resnet20 mobilenetv3s] [--threads 1] [--rounds 15]

Writes benchmarks/results/quant.json and quant.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

from benchmarks.quant_train import MODELS, trained
from edgekit.backends import BACKENDS, CompileRequest
from edgekit.backends.onnxruntime import OrtSession
from edgekit.calibration import draw_calibration
from edgekit.data import load_data
from edgekit.data.core import prepared_batches
from edgekit.profiling.artifacts import session_logits
from edgekit.profiling.latency import host_identity
from edgekit.runtime import interleaved_latency
from edgekit.target import load_target
from edgekit.training import evaluate_module

RESULTS = Path(__file__).resolve().parent / "results"
RUNTIMES = [("onnxruntime", "x86-cpu"), ("openvino", "x86-cpu"), ("tflite", "rpi4")]


def top1(session, spec, ds) -> float:
    logits, labels = session_logits(session, spec, ds, batch_size=100)
    return float((logits.argmax(1) == labels).mean() * 100)


def bench_model(name: str, threads: int, rounds: int) -> dict:
    model = trained(name)
    data = load_data("fashion-mnist", image_size=model.spec.hw)
    ref = evaluate_module(model.module, model.spec, data.test)["top1"]
    cal = draw_calibration(data.train, model.spec, 300, seed=0)
    sample = next(prepared_batches(data.test, model.spec, 1))[0].numpy()
    out = {"model": MODELS[name][0], "notes": model.notes, "pytorch_top1": ref, "test_images": len(data.test),
           "runtimes": {}}
    root = Path(tempfile.mkdtemp(prefix=f"quant-bench-{name}-"))
    try:
        for backend, target in RUNTIMES:
            request = CompileRequest(out_dir=root, target=load_target(target), calibration=cal.inputs)
            arts = {p: BACKENDS.get(backend)().compile(model, p, request) for p in ("fp32", "int8")}
            sessions = {p: BACKENDS.get(backend)().load(a, root, threads) for p, a in arts.items()}
            acc = {p: top1(s, model.spec, data.test) for p, s in sessions.items()}
            # median over rounds of each round's p50, FP32 and INT8 alternating every round
            lat = interleaved_latency({p: s.run for p, s in sessions.items()}, sample, rounds=rounds,
                                      runs_per_round=40, warmup=20, round_warmup=3, max_seconds=2)
            row = {p: {"top1": acc[p], "bytes": arts[p].bytes, "p50_ms": lat[p]["median_round_p50_ms"],
                       "p50_ms_per_round": [round(x, 4) for x in lat[p]["round_p50_ms"]],
                       "meta": {k: v for k, v in arts[p].meta.items() if k in (
                           "activation_type", "method", "executed_precision", "graph_fixes", "ops", "io")}}
                   for p in arts}
            row["int8_drop_vs_fp32"] = acc["fp32"] - acc["int8"]
            row["size_ratio"] = arts["fp32"].bytes / arts["int8"].bytes
            row["speedup_int8_vs_fp32"] = lat["fp32"]["median_round_p50_ms"] / lat["int8"]["median_round_p50_ms"]
            out["runtimes"][backend] = row
            print(f"{name} {backend}: fp32 {acc['fp32']:.2f}% int8 {acc['int8']:.2f}% size x{row['size_ratio']:.2f} "
                  f"p50 {row['fp32']['p50_ms']:.3f} -> {row['int8']['p50_ms']:.3f} ms", flush=True)
        trt = BACKENDS.get("tensorrt")().compile(model, "int8", CompileRequest(
            out_dir=root, target=load_target("jetson-orin-nano"), calibration=cal.inputs))
        out["tensorrt_qdq_on_onnxruntime_top1"] = top1(OrtSession(root / trt.meta["build"]["onnx"], threads,
                                                                   simulate_qdq=True),
                                                        model.spec, data.test)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def bars(results: dict) -> list[dict]:
    rows = []
    for name, r in results["models"].items():
        for backend, row in r["runtimes"].items():
            rows.append({"bar": f"{name} {backend} INT8 within 1.0 pt of FP32", "value": round(row["int8_drop_vs_fp32"], 2),
                         "met": row["int8_drop_vs_fp32"] <= 1.0})
            rows.append({"bar": f"{name} {backend} INT8 >= 3x smaller", "value": round(row["size_ratio"], 2),
                         "met": row["size_ratio"] >= 3.0})
        ov = r["runtimes"].get("openvino")
        if ov:
            rows.append({"bar": f"{name} OpenVINO INT8 faster than FP32 (p50 ratio)",
                         "value": round(ov["speedup_int8_vs_fp32"], 2), "met": ov["speedup_int8_vs_fp32"] > 1.0})
    return rows


def markdown(results: dict) -> str:
    lines = [f"# Quantization benchmark ({results['date']})", "",
             f"Host: {results['host']['cpu']}, {results['host']['cores']} cores, threads {results['threads']}, "
             "batch 1; latency = median over interleaved rounds of each round's p50.", "",
             "| model | runtime | FP32 top-1 | INT8 top-1 | drop pt | FP32 size | INT8 size | size ratio | "
             "FP32 p50 ms | INT8 p50 ms | speed-up |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["models"].items():
        for backend, row in r["runtimes"].items():
            f, i = row["fp32"], row["int8"]
            lines.append(f"| {name} | {backend} | {f['top1']:.2f} | {i['top1']:.2f} | {row['int8_drop_vs_fp32']:+.2f} | "
                         f"{f['bytes'] / 1024:.0f} KB | {i['bytes'] / 1024:.0f} KB | {row['size_ratio']:.2f}x | "
                         f"{f['p50_ms']:.3f} | {i['p50_ms']:.3f} | {row['speedup_int8_vs_fp32']:.2f}x |")
        lines.append(f"| {name} | PyTorch | {r['pytorch_top1']:.2f} | TensorRT QDQ on ORT, Q/DQ simulated in float: "
                     f"{r['tensorrt_qdq_on_onnxruntime_top1']:.2f} | | | | | | | |")
    lines += ["", "## Bars", "", "| bar | value | met |", "|---|---|---|"]
    lines += [f"| {b['bar']} | {b['value']} | {'yes' if b['met'] else '**no**'} |" for b in results["bars"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / "quant.json"
    # Models benchmarked in separate invocations accumulate (each model's runtimes are still compared
    # side by side within one run).
    models = json.loads(previous.read_text())["models"] if previous.exists() else {}
    models.update({m: bench_model(m, args.threads, args.rounds) for m in args.models})
    results = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": host_identity(),
               "threads": args.threads, "models": models}
    results["bars"] = bars(results)
    (RESULTS / "quant.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / "quant.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
