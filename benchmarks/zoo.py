"""The architecture zoo: torchvision + timm classifiers (random weights) through structured pruning
to 50% MACs, then FP32 + INT8 for x86-cpu (OpenVINO, ONNX Runtime) and rpi4 (LiteRT, ONNX Runtime).

Each model runs in its own subprocess (``nice -n 10``, one thread, a memory cap and a timeout), so
one model that is killed cannot take the sweep down; results are appended to
benchmarks/cache/zoo/zoo.{json,md} after every model (the suite's result: ``python -m benchmarks run zoo``,
benchmarks/zoo_suite.py). Data: a 6-class RGB image folder written from
Fashion-MNIST (12 PNGs per class). Agreement = top-1 agreement (%) of the artifact with the pruned
PyTorch model over those 72 images; latency = batch-1 p50 through the artifact's runtime here.

    python -m benchmarks.zoo                       # the whole zoo
    python -m benchmarks.zoo --only mixnet_s swin_t # a few (matched against the source string)
    python -m benchmarks.zoo --failed               # rerun the models whose last result had an error
    python -m benchmarks.zoo --sample 40 --seed 7   # a random draw (zoo_sample.py; suite: run zoo-sample)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "cache" / "zoo"   # the sweep's own files; the suite's result: python -m benchmarks run zoo
IMAGES = ROOT / "cache" / "zoo_images"
LOGS = ROOT / "cache" / "zoo_logs"   # one log per model's child process (not results: kept out of the tree)
FMNIST = Path("/usr/share/datasets/fashion-mnist")
TV, TM = "torchvision:{}?weights=none", "timm:{}?pretrained=false"

# (source, input px, in the issue's 32?)
ISSUE = [(TV.format(n), 64) for n in (
    "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "efficientnet_b0", "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf",
    "convnext_tiny", "densenet121", "mnasnet0_5", "googlenet", "alexnet", "vgg11_bn")] + [
    (TM.format(n), 64) for n in ("efficientnet_lite0", "ghostnet_100", "repvgg_a0", "mobileone_s0", "lcnet_050")] + [
    (TV.format("vit_b_16") + "&image_size=64", 64), (TM.format("deit_tiny_patch16_224") + "&img_size=64", 64),
    (TM.format("mobilevit_xxs"), 64), (TM.format("levit_128s") + "&img_size=64", 64),
    (TM.format("fastvit_t8"), 64), (TM.format("edgenext_xx_small"), 64), (TM.format("mixnet_s"), 64),
    (TV.format("swin_t"), 224), (TV.format("shufflenet_v2_x1_0"), 64), (TV.format("squeezenet1_1"), 64)]
MORE = [(TM.format(n) + ("&img_size=64" if vit else ""), 64) for n, vit in (
    ("efficientvit_m0", True), ("efficientvit_b0", False), ("deit_tiny_distilled_patch16_224", True),
    ("pvt_v2_b0", False), ("poolformer_s12", False), ("convnextv2_atto", False), ("resnet18d", False),
    ("tinynet_a", False), ("mobilenetv4_conv_small", False), ("repvit_m1", False), ("coat_lite_tiny", True),
    ("vit_tiny_patch16_224", True), ("mobilevitv2_050", False), ("efficientformer_l1", True),
    ("tiny_vit_5m_224", True), ("resnet10t", False))]
# Run order: the issue's failures first, then the rest of its 32, then the others; Swin-T (224 px) last.
FIRST = ("vit_b_16", "deit_tiny", "mobilevit_xxs", "levit", "fastvit", "edgenext", "mixnet", "shufflenet",
         "squeezenet", "alexnet", "vgg11_bn", "convnext_tiny")
_ordered = sorted(ISSUE, key=lambda m: (next((i for i, k in enumerate(FIRST) if k in m[0]), len(FIRST)),
                                        "swin_t" in m[0]))
MODELS = ([(s, px, True) for s, px in _ordered if "swin_t" not in s] + [(s, px, False) for s, px in MORE]
          + [(s, px, True) for s, px in _ordered if "swin_t" in s])
STEPS = [("x86-cpu", "openvino"), ("x86-cpu", "onnxruntime"), ("rpi4", "tflite"), ("rpi4", "onnxruntime")]
# The ExecuTorch column (issue 40): a step of its own, run by an interpreter that has ExecuTorch (the extra
# ``edgekit[executorch]`` is not in ``[all]``), as the scenario ``zoo-executorch``.
EXECUTORCH_STEPS = [("rpi4", "executorch")]
PRECISIONS = ("fp32", "int8")
MEMORY_LIMIT_GB = 12.0
TIMEOUT_S = 1500
# The share of a model's wall-clock cap its pruning may take: pruning's own time bound (edgekit.pruning.bounds,
# scaled to the model) is lowered to it, so that a cap shorter than that bound ends pruning with "time bound
# reached, model kept" and leaves time to compile, instead of the sweep killing the model mid-prune.
PRUNE_SHARE_OF_CAP = 0.4


def write_images(root: Path = IMAGES, classes: int = 6, per_class: int = 12) -> Path:
    """A small RGB image folder from Fashion-MNIST (grey replicated to 3 channels), once."""
    if root.exists() and sum(1 for _ in root.rglob("*.png")) == classes * per_class:
        return root
    import numpy as np
    from PIL import Image

    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, idx in enumerate(np.flatnonzero(labels == c)[:per_class]):
            Image.fromarray(images[idx]).convert("RGB").save(folder / f"{i:02d}.png")
    return root


def _error_line(err: BaseException) -> str:
    from edgekit.errors import EdgekitError

    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    return line[:400] if isinstance(err, EdgekitError) else f"TRACEBACK {type(err).__name__}: {line[:300]}"


def parse_steps(steps: list[str] | str | None) -> list[tuple[str, str]]:
    """``["rpi4/executorch", ...]`` (or one comma-separated string) as (target, backend) pairs; none = ``STEPS``."""
    if not steps:
        return list(STEPS)
    items = steps.split(",") if isinstance(steps, str) else steps
    return [tuple(item.strip().split("/", 1)) for item in items]  # type: ignore[misc]


def run_one(source: str, px: int, steps: list[tuple[str, str]] | None = None, cap: float | None = None) -> dict:
    """Everything for one model, in this process (the child): load, prune, then each (target, backend) of
    ``steps`` (default ``STEPS``) at each precision. ``cap``: the sweep's wall-clock cap for this model (s)."""
    import shutil
    import tempfile

    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)   # the same random weights on every run, so agreements compare across runs
    from edgekit.backends import BACKENDS, CompileRequest
    from edgekit.calibration import draw_calibration
    from edgekit.data import load_data
    from edgekit.data.core import prepared_batches
    from edgekit.models.reparam import NOTE, reparameterize
    from edgekit.models.sources import load_model, replace_classifier
    from edgekit.models.complexity import count_macs
    from edgekit.pruning.structured import StructuredPlan, structured_prune
    from edgekit.runtime import measure_latency
    from edgekit.target import load_target

    row: dict = {"model": source, "input": px, "stages": {}}
    t0 = time.perf_counter()
    try:
        model = load_model(source, input_size=(px, px))
        data = load_data(str(write_images()), image_size=model.spec.hw)
        replace_classifier(model, data.num_classes)
        row["macs_before"] = count_macs(model.module, model.spec)
        if reparameterize(model.module):
            model.notes[NOTE] = "yes"
        bound = None   # pruning's own default, unless the cap is shorter than it allows
        if cap:
            from edgekit.models.complexity import count_params
            from edgekit.pruning.bounds import default_seconds

            if default_seconds(row["macs_before"], count_params(model.module)) > PRUNE_SHARE_OF_CAP * cap:
                bound = PRUNE_SHARE_OF_CAP * cap
        result = structured_prune(model.module, model.spec, StructuredPlan(target="macs", value=0.5,
                                                                           max_seconds=bound))
        row["macs_after"] = count_macs(model.module, model.spec)
        row["prune"] = {k: result[k] for k in ("macs_fraction", "target_met", "steps_taken")}
        row["prune"]["auto_ignored"] = len(result["auto_ignored"])
        row["prune"]["auto_ignored_examples"] = dict(list(result["auto_ignored"].items())[:3])
        row["prune"]["left_alone"] = result["auto_ignored"]
        row["prune"]["time_bound"] = result.get("time_bound")
        for key in ("unpruned", "stopped"):
            if result.get(key):
                row["prune"][key] = result[key]
        row["stages"]["prune"] = "ok"
    except BaseException as err:  # noqa: BLE001 - the row records it
        row["stages"]["prune"] = _error_line(err)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        return row
    row["prune_seconds"] = round(time.perf_counter() - t0, 1)
    inputs = np.concatenate([x.numpy() for x, _ in prepared_batches(data.test, model.spec, 64)]
                            + [x.numpy() for x, _ in prepared_batches(data.val, model.spec, 64)])
    with torch.no_grad():
        reference = model.module.eval()(torch.from_numpy(inputs)).numpy()
    cal = draw_calibration(data.train, model.spec, 32, seed=0)
    root = Path(tempfile.mkdtemp(prefix="zoo-"))
    try:
        for target_name, backend in steps or STEPS:
            target = load_target(target_name)
            for precision in PRECISIONS:
                key = f"{target_name}/{backend}/{precision}"
                if key == "rpi4/onnxruntime/fp32" and "x86-cpu/onnxruntime/fp32" in row["stages"]:
                    # the same exporter and file as x86-cpu's: not rebuilt
                    row["stages"][key] = {**row["stages"]["x86-cpu/onnxruntime/fp32"], "note": "same file as x86-cpu"}
                    continue
                t1 = time.perf_counter()
                try:
                    out = root / key.replace("/", "_")
                    request = CompileRequest(out_dir=out, target=target, calibration=cal.inputs)
                    art = BACKENDS.get(backend)().compile(model, precision, request)
                    session = BACKENDS.get(backend)().load(art, out, 1)
                    logits = np.concatenate([session.run(inputs[i:i + 1]) for i in range(len(inputs))])
                    lat = measure_latency(session.run, inputs[:1], warmup=3, runs=20, max_seconds=2)
                    row["stages"][key] = {
                        "status": "ok", "agreement": round(float((logits.argmax(1) == reference.argmax(1)).mean()
                                                                 * 100), 1),
                        "max_abs_logit_diff": float(np.abs(logits - reference).max()),
                        "p50_ms": round(lat["p50_ms"], 3), "seconds": round(time.perf_counter() - t1, 1),
                        "kept_float": art.meta.get("kept_float")}
                    if "portable_ops" in art.meta:   # ExecuTorch: ops left on its portable kernels
                        row["stages"][key]["portable_ops"] = art.meta["portable_ops"]
                except BaseException as err:  # noqa: BLE001
                    row["stages"][key] = {"status": _error_line(err), "seconds": round(time.perf_counter() - t1, 1)}
                print(key, row["stages"][key], file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def _rss_gb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (GB), from /proc."""
    total = 0
    try:
        out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        total += sum(int(v) for v in out.split())
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    except (OSError, ValueError):
        pass
    return total / 1e6


def run_isolated(source: str, px: int, timeout: float, memory_gb: float, steps: list[str] | None = None) -> dict:
    """The child process for one model (``steps`` as ``parse_steps`` takes them; default ``STEPS``); a kill
    (memory, time) becomes a one-line result."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT.parent), "PYTHONWARNINGS": "ignore",
           # edgekit's own guard fails pruning with a one-line error before the sweep's kill limit
           "EDGEKIT_MEMORY_LIMIT_GB": str(memory_gb - 1.5)}
    out = Path(f"/tmp/zoo-row-{os.getpid()}.json")
    out.unlink(missing_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / (source.split("?")[0].replace(":", "_") + ".log"), "w")
    proc = subprocess.Popen(["nice", "-n", "10", sys.executable, "-m", "benchmarks.zoo", "--child", source,
                             str(px), str(out), "--cap", str(timeout)]
                            + (["--steps", ",".join(steps)] if steps else []), env=env, cwd=ROOT.parent, stdout=log, stderr=log)
    start, peak, why = time.time(), 0.0, None
    while proc.poll() is None:
        time.sleep(1)
        peak = max(peak, _rss_gb(proc.pid))
        if peak > memory_gb:
            why = f"killed by the sweep: memory above {memory_gb} GB"
        elif time.time() - start > timeout:
            why = f"killed by the sweep: over {timeout:.0f} s"
        if why:
            proc.kill()
            proc.wait()
            break
    log.close()
    if out.exists():
        row = json.loads(out.read_text())
    else:
        row = {"model": source, "input": px, "stages": {"prune": why or f"child exited {proc.returncode} "
                                                                     "without a result (see zoo_logs)"}}
    row["peak_rss_gb"] = round(peak, 2)
    return row


def _cell(stage) -> str:
    if stage is None:
        return "—"
    if isinstance(stage, str):
        return "ok" if stage == "ok" else stage.replace("|", "/")
    if stage["status"] != "ok":
        return stage["status"].replace("|", "/")
    portable = sum((stage.get("portable_ops") or {}).values())
    return f"ok {stage['agreement']:.0f}% {stage['p50_ms']:.2f}ms" + (f", {portable} ops portable" if portable else "")


def passes(row: dict, target: str, steps: list[tuple[str, str]] | None = None, agreement: float | None = 99) -> bool:
    """Prune + FP32 and INT8 built and run on every backend of ``target`` (among ``steps``, default ``STEPS``),
    FP32 agreement >= ``agreement`` % (None: built and run is enough)."""
    if row["stages"].get("prune") != "ok":
        return False
    for t, backend in steps or STEPS:
        if t != target:
            continue
        for p in PRECISIONS:
            s = row["stages"].get(f"{t}/{backend}/{p}")
            if not isinstance(s, dict) or s["status"] != "ok" or (
                    p == "fp32" and agreement is not None and s["agreement"] < agreement):
                return False
    return True


def write_results(rows: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "zoo.json").write_text(json.dumps({"models": rows}, indent=1))
    issue = {s for s, _ in ISSUE}
    counts = {t: sum(passes(r, t) for r in rows if r["model"] in issue) for t in ("x86-cpu", "rpi4")}
    done = sum(r["model"] in issue for r in rows)
    lines = ["# Architecture zoo: prune to 50% MACs, FP32 + INT8 on x86-cpu and rpi4", "",
             f"Of the issue's 32 models ({done} run so far): **{counts['x86-cpu']}** pass prune + FP32/INT8 on "
             f"x86-cpu and **{counts['rpi4']}** on rpi4 (FP32 agreement >= 99%). All models: "
             f"{sum(passes(r, 'x86-cpu') for r in rows)}/{len(rows)} x86-cpu, "
             f"{sum(passes(r, 'rpi4') for r in rows)}/{len(rows)} rpi4.", "",
             "Random weights, 6-class Fashion-MNIST RGB folder (72 images), batch-1 p50 latency on this host "
             "(1 thread, shared machine: indicative). Cells: top-1 agreement with the pruned PyTorch model, "
             "p50. `python -m benchmarks.zoo` regenerates this file.", "",
             "| model | px | issue | prune | MACs M before → after | " + " | ".join(
                 f"{t} {b} {p}" for t, b in STEPS for p in PRECISIONS) + " | s |",
             "|---|---|---|---|---|" + "---|" * (len(STEPS) * len(PRECISIONS)) + "---|"]
    for r in rows:
        macs = (f"{r['macs_before'] / 1e6:.0f} → {r['macs_after'] / 1e6:.0f}" if "macs_after" in r else "—")
        prune = _cell(r["stages"].get("prune"))
        if prune == "ok" and r.get("prune"):
            prune = f"ok {r['prune']['macs_fraction']:.0%}" + (f", {r['prune']['auto_ignored']} kept whole"
                                                              if r["prune"]["auto_ignored"] else "")
        cells = [_cell(r["stages"].get(f"{t}/{b}/{p}")) for t, b in STEPS for p in PRECISIONS]
        lines.append(f"| {r['model'].split('?')[0]} | {r['input']} | {'yes' if r['model'] in issue else ''} | "
                     f"{prune} | {macs} | " + " | ".join(cells) + f" | {r.get('seconds', '—')} |")
    (RESULTS / "zoo.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--steps", help=argparse.SUPPRESS)   # the child's (target/backend,...) list
    parser.add_argument("--cap", type=float, help=argparse.SUPPRESS)   # the child's wall-clock cap (s)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--failed", action="store_true", help="rerun models whose last row is not a pass")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument("--memory-gb", type=float, default=MEMORY_LIMIT_GB)
    parser.add_argument("--sample", type=int, help="a random draw of this many architectures from the "
                        "registries instead of the named list (benchmarks/zoo_sample.py)")
    parser.add_argument("--seed", type=int, default=0, help="the draw's seed (with --sample)")
    parser.add_argument("--source", choices=("timm", "torchvision", "all"), default="all",
                        help="which registry to draw from (with --sample)")
    args = parser.parse_args()
    if args.child:
        source, px, out = args.child
        row = run_one(source, int(px), parse_steps(args.steps), args.cap)
        Path(out).write_text(json.dumps(row, default=str))
        return
    if args.sample:
        from benchmarks.zoo_sample import print_sample, run_sample

        print_sample(*run_sample(args.sample, args.seed, args.source, args.timeout, args.memory_gb), args.seed)
        return
    write_images()
    previous = {}
    if (RESULTS / "zoo.json").exists():
        previous = {r["model"]: r for r in json.loads((RESULTS / "zoo.json").read_text())["models"]}
    selected = [(s, px) for s, px, _ in MODELS
                if (not args.only or any(o in s for o in args.only))
                and (not args.failed or not (s in previous and passes(previous[s], "x86-cpu")
                                             and passes(previous[s], "rpi4")))]
    rows = dict(previous)
    for source, px in selected:
        print(f"== {source} ({px} px)", flush=True)
        row = run_isolated(source, px, args.timeout, args.memory_gb)
        if (RESULTS / "zoo.json").exists():  # another sweep process may have added rows meanwhile
            rows.update({r["model"]: r for r in json.loads((RESULTS / "zoo.json").read_text())["models"]})
        rows[source] = row
        print(json.dumps(rows[source]["stages"], default=str)[:600], flush=True)
        order = [s for s, _, _ in MODELS] + [s for s in rows if s not in {m for m, _, _ in MODELS}]
        write_results([rows[s] for s in order if s in rows])


if __name__ == "__main__":
    main()
