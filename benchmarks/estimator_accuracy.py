"""How good is the roofline latency estimator, against the number reports and gates compare it with?

Estimates this host's own latency (targets/x86-cpu.yaml) for >= 15 architectures and input sizes, FP32
and INT8, and compares with ONNX Runtime's WALL-CLOCK p50 at the thread count the estimate is for.

Honest protocol:
- measured: each model exported to ONNX (random weights) and quantized to INT8 the way the ONNX Runtime
  backend does (QDQ, U8 activations, per-channel S8 weights; ``quantize_qdq``), both run through
  ONNX Runtime at ``THREADS`` threads; 7 interleaved rounds (every candidate once per round), p50 of
  wall-clock time per round, the quietest round's (``quiet_p50``). This host is shared, so the wall clock includes other
  users' time slices: that is what a report on this host shows, so that is what the estimate must hit;
- calibration: FP32 and INT8 each get their own efficiency factors, per-layer overhead and per-element
  cost of epilogue / lookup / element-wise ops (``fit_efficiency``; a kind no other model has, e.g.
  EfficientNet-B0's lookups when it is left out, is set to its memory floor and the table says so); the errors we report are LEAVE-ONE-OUT (each model predicted by a fit on the
  other models), plus the uncalibrated defaults for reference;
- INT8-vs-FP32 ordering: for each model, does the (LOO) estimate say INT8 is faster exactly when the
  measurement does?
- per device, where a target file has published latencies, the estimate against each published figure.

    nice -n 10 python -m benchmarks run estimator-x86                 # measure + analyse (~8 min, shared host)
    python -m benchmarks run estimator-x86 --set reuse=true          # re-analyse the last measurements
                                                                     # (the cache, else the stored result's rounds)
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.schema import Measured
from edgekit.backends.onnx_quant import quantize_qdq
from edgekit.errors import EdgekitError
from edgekit.models import load_model
from edgekit.models.onnx_export import export_onnx
from edgekit.profiling.estimate import (NS_PER_ELEMENT, DeviceModel, fit_efficiency, layer_costs, published_checks,
                                        roofline_ms)
from edgekit.runtime import OrtSession, interleaved_latency
from edgekit.spec import ModelSpec
from edgekit.target import load_target

THREADS = 1   # the estimate is scaled to this many of the target's cores (DeviceModel ``threads``)
CONFIGS = [
    ("builtin:tinycnn", None), ("builtin:resnet8", None), ("builtin:resnet20", None),
    ("builtin:resnet18_32", None), ("builtin:mobilenetv3s_32", None),
    ("torchvision:resnet18", 64), ("torchvision:resnet18", 112), ("torchvision:resnet18", 224),
    ("torchvision:resnet50", 128), ("torchvision:mobilenet_v2", 160), ("torchvision:mobilenet_v3_small", 224),
    ("torchvision:mobilenet_v3_small", 128), ("torchvision:mobilenet_v3_large", 160),
    ("torchvision:efficientnet_b0", 128), ("torchvision:squeezenet1_1", 160),
    ("torchvision:shufflenet_v2_x1_0", 224), ("torchvision:regnet_x_400mf", 128),
]
PRECISIONS = ("fp32", "int8")
ROUNDS = 7


def quiet_p50(round_p50s: list[float]) -> float:
    """The wall-clock p50 of the least-disturbed round. This host is shared (load average 3-4x its cores,
    and the benchmark runs at nice 10): a whole round of a 20 ms model can read 10x slow because the
    process was starved, which says nothing about the model. The quietest round is still a wall-clock p50
    (what a report on an idle host shows); the median over rounds is kept in the JSON."""
    return min(round_p50s)


def build(source: str, size: int | None):
    if source.startswith("torchvision:"):
        import torchvision

        module = torchvision.models.get_model(source.split(":", 1)[1], weights=None, num_classes=1000).eval()
        spec = ModelSpec(input_shape=(3, size, size), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                         num_classes=1000)
        return module, spec
    loaded = load_model(source)
    return loaded.module.eval(), loaded.spec


def measure() -> list[dict]:
    entries, runs, inputs = [], {}, {}
    tmp = tempfile.TemporaryDirectory()
    for i, (source, size) in enumerate(CONFIGS):
        module, spec = build(source, size)
        label = f"{source}@{spec.hw[0]}"
        fp32 = Path(tmp.name) / f"{i}.onnx"
        export_onnx(module, spec, fp32)
        rng = np.random.default_rng(i)
        calibration = rng.standard_normal((16, *spec.input_shape)).astype(np.float32)
        int8 = Path(tmp.name) / f"{i}-int8.onnx"
        quantize_qdq(fp32, int8, calibration, "ort-u8")
        x = calibration[:1]
        for precision, path in (("fp32", fp32), ("int8", int8)):
            runs[f"{label}|{precision}"] = OrtSession(path, THREADS).run
            inputs[f"{label}|{precision}"] = x
        entries.append({"label": label, "macs": sum(c.macs for c in layer_costs(module, spec))})
        print(f"prepared {label}: {entries[-1]['macs'] / 1e6:.1f} MMACs", flush=True)
    wall = interleaved_latency(runs, inputs, rounds=ROUNDS, runs_per_round=25, warmup=3, round_warmup=2,
                               max_seconds=0.8, on_round=lambda r: print(f"round {r + 1} done", flush=True))
    for e in entries:
        for p in PRECISIONS:
            e[f"{p}_round_p50_ms"] = wall[f"{e['label']}|{p}"]["round_p50_ms"]
            e[f"{p}_wall_ms"] = quiet_p50(e[f"{p}_round_p50_ms"])
    tmp.cleanup()
    return entries


def _device(base: DeviceModel, fit: dict) -> DeviceModel:
    return DeviceModel(**{**base.__dict__, "efficiency": fit["runtime_efficiency"], "overhead_us": fit["layer_overhead_us"],
                          "ns_per_element": {k: fit[key] for k, key in NS_PER_ELEMENT.items()}})


def analyse(entries: list[dict], ort_version: str) -> dict:
    target = load_target("x86-cpu")
    uncalibrated = target.model_copy(update={"device": target.device.model_copy(
        update={"runtime_efficiency": {}, "layer_overhead_us": None, "precision_efficiency": {}})})
    costs = {e["label"]: layer_costs(*build(*CONFIGS[i])) for i, e in enumerate(entries)}
    rows = {e["label"]: {"model": e["label"], "mmacs": round(e["macs"] / 1e6, 2)} for e in entries}
    fits = {}
    for p in PRECISIONS:
        base = DeviceModel.from_target(uncalibrated, p, THREADS)
        fits[p] = fit_efficiency([(costs[e["label"]], e[f"{p}_wall_ms"]) for e in entries], base)
        for e in entries:
            others = [(costs[o["label"]], o[f"{p}_wall_ms"]) for o in entries if o is not e]
            loo_fit = fit_efficiency(others, base)
            loo = roofline_ms(costs[e["label"]], _device(base, loo_fit))["latency_ms"]
            own = {c.kind for c in costs[e["label"]]}
            uncal = roofline_ms(costs[e["label"]], base)["latency_ms"]
            measured = e[f"{p}_wall_ms"]
            rows[e["label"]].update({f"{p}_wall_p50_ms": round(measured, 4),
                                     f"{p}_rounds_ms": [round(v, 4) for v in e[f"{p}_round_p50_ms"]],
                                     f"{p}_estimated_loo_ms": round(loo, 4),
                                     f"{p}_error_loo_pct": round((loo / measured - 1) * 100, 1),
                                     f"{p}_loo_kinds_at_floor": [k for k in loo_fit["unfitted_at_floor"] if k in own],
                                     f"{p}_error_uncalibrated_pct": round((uncal / measured - 1) * 100, 1)})
    for r in rows.values():
        measured_int8_faster = r["int8_wall_p50_ms"] < r["fp32_wall_p50_ms"]
        r["int8_faster_measured"] = measured_int8_faster
        r["int8_faster_estimated"] = r["int8_estimated_loo_ms"] < r["fp32_estimated_loo_ms"]
        r["ordering_right"] = r["int8_faster_measured"] == r["int8_faster_estimated"]
    table = list(rows.values())
    med = {p: statistics.median(abs(r[f"{p}_error_loo_pct"]) for r in table) for p in PRECISIONS}
    med_all = statistics.median([abs(r[f"{p}_error_loo_pct"]) for r in table for p in PRECISIONS])
    med_uncal = statistics.median([abs(r[f"{p}_error_uncalibrated_pct"]) for r in table for p in PRECISIONS])
    ordering = sum(r["ordering_right"] for r in table) / len(table) * 100
    return {"target": "x86-cpu", "runtime": f"onnxruntime {ort_version}", "threads": THREADS,
            "clock": f"wall-clock p50 of the quietest of {ROUNDS} interleaved rounds", "models": table,
            "median_abs_error_loo_pct": {**{p: med[p] for p in PRECISIONS}, "all": med_all},
            "median_abs_error_uncalibrated_pct": med_uncal, "int8_ordering_right_pct": ordering,
            "fits": fits, "published_checks": published_checks()}


def summarize(result: dict) -> Measured:
    """One row per model (the per-round p50s and the fits in details); the medians and the ordering as metrics."""
    rounds = {}
    rows = []
    for r in result["models"]:
        rounds[r["model"]] = {p: r[f"{p}_rounds_ms"] for p in PRECISIONS}
        rows.append({k: v for k, v in r.items() if not k.endswith(("_rounds_ms", "_kinds_at_floor"))})
    med = result["median_abs_error_loo_pct"]
    floor = ", ".join(f"{r['model']} ({', '.join(sorted(set(r['fp32_loo_kinds_at_floor']) | set(r['int8_loo_kinds_at_floor'])))})"
                      for r in result["models"] if r["fp32_loo_kinds_at_floor"] or r["int8_loo_kinds_at_floor"])
    return Measured(
        rows=rows,
        metrics={"median_abs_error_loo_pct": med["all"], "median_abs_error_loo_fp32_pct": med["fp32"],
                 "median_abs_error_loo_int8_pct": med["int8"],
                 "median_abs_error_uncalibrated_pct": result["median_abs_error_uncalibrated_pct"],
                 "int8_ordering_right_pct": result["int8_ordering_right_pct"]},
        details={"rounds_ms": rounds, "fits": result["fits"], "published_checks": result["published_checks"],
                 "runtime": result["runtime"], "threads": result["threads"], "clock": result["clock"]},
        notes=[f"{result['runtime']}, {result['threads']} thread(s), batch 1, random weights. Measured = "
               f"{result['clock']} on a shared host (what reports on this host show). Estimated = leave-one-out "
               "calibration (the model itself is not in the fit), FP32 and INT8 each with their own fitted efficiency "
               "and per-layer overhead; the fits (details.fits) are written to targets/x86-cpu.yaml.",
               "Leave-one-out fits with no other model of one of the model's op kinds cost that kind at its memory "
               f"floor (not fitted): {floor or 'none'}.",
               "details.published_checks: the estimate against each target file's published figures (in-sample: "
               "the target files calibrate on them)."])


def previous_entries(work: Path) -> list[dict] | None:
    """The last measurements: this scenario's cache, else the per-round p50s of the stored result of this host."""
    cache = work / "estimator_measurements.json"
    if cache.is_file():
        entries = json.loads(cache.read_text())
    else:
        from benchmarks.schema import RESULTS, Host, load_result

        stored = RESULTS / work.name / f"{Host.here().slug}.json"
        if not stored.is_file():
            return None
        result = load_result(stored)
        entries = [{"label": r["model"], "macs": round(r["mmacs"] * 1e6),
                    **{f"{p}_round_p50_ms": result.details["rounds_ms"][r["model"]][p] for p in PRECISIONS}}
                   for r in result.rows]
    for e in entries:
        for p in PRECISIONS:
            e[f"{p}_wall_ms"] = quiet_p50(e[f"{p}_round_p50_ms"])
    return entries


def run(work: Path, reuse: bool = False) -> Measured:
    """The kind ``estimator``: measure (~8 min on a shared host) and analyse; ``reuse``: re-analyse the last
    measurements instead."""
    import onnxruntime as ort

    torch.manual_seed(0)
    entries = previous_entries(work) if reuse else None
    if entries is None:
        if reuse:
            raise EdgekitError("no earlier measurements to reuse on this host", "run it once without reuse")
        entries = measure()
        (work / "estimator_measurements.json").write_text(json.dumps(entries, indent=1))
    return summarize(analyse(entries, ort.__version__))
