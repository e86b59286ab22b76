"""INT8 vs FP32 through each runtime, on Fashion-MNIST (full 10k test split).

For each model (``quant_train.py`` trains and caches them under benchmarks/cache/): compile FP32 and
INT8 for ONNX Runtime (QDQ), OpenVINO (NNCF) and LiteRT (PT2E), plus the TensorRT QDQ ONNX (accuracy
on ONNX Runtime), then measure top-1 on all 10k test images through each artifact's own runtime,
size on disk, and batch-1 latency with FP32 and INT8 of one runtime *interleaved* (alternating
rounds in one process, so machine contention hits both alike). Bars checked (issue 4): INT8 top-1
within 1.0 point of FP32, INT8 >= 3x smaller, OpenVINO INT8 faster than OpenVINO FP32 (scenarios.yaml).

    nice -n 10 python -m benchmarks run quant [--set "models=[resnet20]"] [--set rounds=15]
    python -m benchmarks run quant-openvino-sizes
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchmarks.quant_train import MODELS, trained
from benchmarks.schema import Measured
from edgekit.backends import BACKENDS, CompileRequest
from edgekit.backends.onnxruntime import OrtSession
from edgekit.calibration import draw_calibration
from edgekit.data import load_data
from edgekit.data.core import prepared_batches
from edgekit.profiling.artifacts import session_logits
from edgekit.runtime import interleaved_latency
from edgekit.target import load_target
from edgekit.training import evaluate_module

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


def run(work: Path, models: list[str] | None = None, threads: int = 1, rounds: int = 15) -> Measured:
    """The kind ``quant``: each of ``models`` (names of ``quant_train.MODELS``) through every runtime."""
    return summarize({"threads": threads, "models": {m: bench_model(m, threads, rounds) for m in models or list(MODELS)}})


def summarize(results: dict) -> Measured:
    """One row per model and runtime (plus PyTorch and the TensorRT QDQ file on ONNX Runtime); the worst drop,
    the smallest size ratio and the slowest OpenVINO INT8 speed-up as metrics."""
    rows, drops, ratios, ov_speedups = [], [], [], []
    for name, r in results["models"].items():
        for backend, row in r["runtimes"].items():
            f, i = row["fp32"], row["int8"]
            rows.append({"model": name, "runtime": backend, "fp32_top1": f["top1"], "int8_top1": i["top1"],
                         "drop_pt": round(row["int8_drop_vs_fp32"], 3), "fp32_kb": round(f["bytes"] / 1024),
                         "int8_kb": round(i["bytes"] / 1024), "size_ratio": round(row["size_ratio"], 3),
                         "fp32_p50_ms": f["p50_ms"], "int8_p50_ms": i["p50_ms"],
                         "speedup": round(row["speedup_int8_vs_fp32"], 3)})
            drops.append(row["int8_drop_vs_fp32"])
            ratios.append(row["size_ratio"])
            if backend == "openvino":
                ov_speedups.append(row["speedup_int8_vs_fp32"])
        rows.append({"model": name, "runtime": "PyTorch (FP32) / TensorRT QDQ on ONNX Runtime (INT8)",
                     "fp32_top1": r["pytorch_top1"], "int8_top1": r.get("tensorrt_qdq_on_onnxruntime_top1")})
    return Measured(rows=rows, metrics={"int8_drop_pt": max(drops, default=None),
                                        "int8_size_ratio": min(ratios, default=None),
                                        "openvino_int8_speedup": min(ov_speedups, default=None)},
                    details={"models": {n: {k: v for k, v in r.items() if k != "runtimes"} | {
                        "meta": {b: {p: row[p]["meta"] for p in ("fp32", "int8")} for b, row in r["runtimes"].items()},
                        "p50_ms_per_round": {b: {p: row[p]["p50_ms_per_round"] for p in ("fp32", "int8")}
                                             for b, row in r["runtimes"].items()}}
                        for n, r in results["models"].items()}},
                    notes=[f"threads {results['threads']}, batch 1; latency = median over interleaved rounds of each "
                           "round's p50 (FP32 and INT8 of one runtime alternating); TensorRT's QDQ file is scored on "
                           "ONNX Runtime with Q/DQ simulated in float"])


def openvino_sizes(work: Path, model: str = "resnet20") -> Measured:
    """The kind ``quant_openvino_sizes``: the OpenVINO IR of ``model`` (a ``quant_train`` name) split into .xml
    and .bin for FP32 and INT8: the INT8 weights (.bin) shrink ~4x, but the XML grows with the quantize and
    dequantize nodes."""
    m = trained(model)
    data = load_data("fashion-mnist", image_size=m.spec.hw)
    cal = draw_calibration(data.train, m.spec, 300, 0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="quant-ov-sizes-") as tmp:
        request = CompileRequest(out_dir=Path(tmp), target=load_target("x86-cpu"), calibration=cal.inputs)
        for precision in ("fp32", "int8"):
            xml = Path(tmp) / BACKENDS.get("openvino")().compile(m, precision, request).path
            rows.append({"precision": precision, "xml_bytes": xml.stat().st_size,
                         "bin_bytes": xml.with_suffix(".bin").stat().st_size})
    return sizes_summary(model, rows)


def sizes_summary(model: str, rows: list[dict]) -> Measured:
    fp32, int8 = rows
    return Measured(rows=rows, metrics={
        "bin_ratio": fp32["bin_bytes"] / int8["bin_bytes"],
        "total_ratio": (fp32["xml_bytes"] + fp32["bin_bytes"]) / (int8["xml_bytes"] + int8["bin_bytes"])},
        details={"model": MODELS[model][0]})
