"""Random draws for the zoo (issue 37): what users bring is any architecture the registries hold, so
coverage is measured on a seeded random draw from ``timm.list_models()`` and torchvision's classifiers,
not on a list the tool was tuned to.

A drawn architecture is kept when this box can run it: parameters <= ``MAX_PARAMS`` and MACs at its
native input size <= ``MAX_MACS``, both counted on the meta device (no weights allocated, no download);
one that cannot even be built is left out with the reason. Each kept model runs through the zoo's own
``run_one`` (prune to 50% MACs, FP32 + INT8 on x86-cpu and rpi4) in its own process under a wall-clock
cap, at 64 px where it accepts that size (directly, or through ``img_size``/``image_size``), else at its
native size.

The suite's scenario is the kind ``zoo_sample`` (``run`` below; the result is
benchmarks/results/zoo-sample/<host>.json). The zoo's own ``--sample`` prints the same table and keeps its
rows in benchmarks/cache/zoo_sample/, never under benchmarks/results/:

    python -m benchmarks run zoo-sample                       # 40 models, the seed of the date
    python -m benchmarks run zoo-sample --set seed=7 --set source=timm
    python -m benchmarks.zoo --sample 6 --seed 1
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from pathlib import Path

from benchmarks.schema import Measured
from benchmarks.zoo import PRECISIONS, ROOT, STEPS, TM, TV, passes, run_isolated, write_images

MAX_PARAMS = 30e6
MAX_MACS = 5e9
SMALL_PX = 64
ASKED_MACS = 0.5
TARGETS = ("x86-cpu", "rpi4")
CACHE = ROOT / "cache" / "zoo_sample"   # the --sample CLI's rows (the suite's runs keep theirs in their work folder)


def date_seed(day: dt.date | None = None) -> int:
    """The seed of a scheduled draw: today's date as YYYYMMDD (a new draw every day, reproducible)."""
    day = day or dt.date.today()
    return day.year * 10000 + day.month * 100 + day.day


def registry_names(source: str) -> list[tuple[str, str]]:
    """(registry, architecture) pairs, sorted, so that a seed draws the same models from the same lists."""
    names: list[tuple[str, str]] = []
    if source in ("timm", "all"):
        import timm

        names += [("timm", n) for n in timm.list_models()]
    if source in ("torchvision", "all"):
        import torchvision

        names += [("torchvision", n) for n in torchvision.models.list_models(module=torchvision.models)]
    return sorted(names)


def _build(registry: str, name: str, **kwargs):
    import torch

    with torch.device("meta"):
        if registry == "timm":
            import timm

            return timm.create_model(name, pretrained=False, **kwargs)
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kwargs)


def _native_px(registry: str, name: str) -> int:
    if registry == "timm":
        import timm

        cfg = timm.get_pretrained_cfg(name)
        size = getattr(cfg, "input_size", None) if cfg is not None else None
        return int(size[-1]) if size else 224
    import torchvision

    try:   # the weights' metadata (no download): inception_v3 299, efficientnet_b3 300, ...
        crop = torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size
        return int(crop[0])
    except Exception:  # noqa: BLE001 - architectures without weights metadata
        return 224


def meta_cost(module, px: int) -> tuple[int, int]:
    """(parameters, MACs of one ``px`` image) of a meta-device module, with PyTorch's FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in module.parameters())
    for p in module.parameters():   # the counter's module tracker fails on no_grad views of parameters
        p.requires_grad_(False)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module.eval()(torch.empty(1, 3, px, px, device="meta"))
    return params, counter.get_total_flops() // 2


def _runs_at(module, px: int) -> bool:
    import torch

    try:
        with torch.no_grad():
            module.eval()(torch.empty(1, 3, px, px, device="meta"))
        return True
    except Exception:  # noqa: BLE001 - the size is refused; the caller tries another
        return False


def probe(registry: str, name: str) -> dict:
    """What the draw needs to know about one architecture: kept (with the source string and size to run
    it at) or left out, with why."""
    entry: dict = {"registry": registry, "name": name}
    try:
        native = _native_px(registry, name)
        module = _build(registry, name)
        params, macs = meta_cost(module, native)
    except Exception as err:  # noqa: BLE001 - recorded: the registry offers it, it cannot be built here
        text = str(err).strip().splitlines()
        return {**entry, "left_out": f"cannot build: {type(err).__name__}: {(text[0] if text else '')[:160]}"}
    entry.update(native_px=native, params=params, macs_native=macs)
    if params > MAX_PARAMS or macs > MAX_MACS:
        return {**entry, "left_out": f"too large for a 2-core box ({params / 1e6:.1f} M params, "
                                     f"{macs / 1e9:.2f} GMACs at {native} px)"}
    base = (TM if registry == "timm" else TV).format(name)
    size_arg = "img_size" if registry == "timm" else "image_size"
    if _runs_at(module, SMALL_PX):
        return {**entry, "source": base, "px": SMALL_PX}
    try:
        if _runs_at(_build(registry, name, **{size_arg: SMALL_PX}), SMALL_PX):
            return {**entry, "source": f"{base}&{size_arg}={SMALL_PX}", "px": SMALL_PX}
    except Exception:  # noqa: BLE001 - no such argument: the native size then
        pass
    return {**entry, "source": base, "px": native}


def draw(n: int, seed: int, source: str = "all") -> tuple[list[dict], list[dict]]:
    """(``n`` kept architectures, the ones drawn before them and left out), in the seed's order."""
    names = registry_names(source)
    random.Random(seed).shuffle(names)
    kept, left_out = [], []
    for registry, name in names:
        if len(kept) == n:
            break
        entry = probe(registry, name)
        (left_out if "left_out" in entry else kept).append(entry)
        verdict = entry.get("left_out") or f"kept, run at {entry['px']} px"
        print(f"draw {registry}:{name}: {verdict}", flush=True)
    return kept, left_out


def failure_kind(row: dict) -> str | None:
    """None when every step passed; else 'killed', 'traceback' or 'error' (a one-line error)."""
    cells = [row["stages"].get("prune")] + [row["stages"].get(f"{t}/{b}/{p}") for t, b in STEPS for p in PRECISIONS]
    texts = [c if isinstance(c, str) else (c or {}).get("status", "") for c in cells]
    bad = [t for t in texts if t and t != "ok"]
    if not bad and cells[0] == "ok" and all(c is not None for c in cells):
        return None
    if any(t.startswith("killed") or "without a result" in t for t in bad):
        return "killed"
    if any(t.startswith("TRACEBACK") for t in bad):
        return "traceback"
    return "error"


def _cell(stage) -> str:
    """A stage's table cell: ``ok`` with the top-1 agreement for a built artifact, else its one line."""
    if stage is None:
        return "—"
    if isinstance(stage, str):
        return "ok" if stage == "ok" else stage[:80]
    if stage["status"] != "ok":
        return stage["status"][:80]
    return f"ok {stage['agreement']:.0f}%"


def _prune_cell(row: dict) -> str:
    prune, p = _cell(row["stages"].get("prune")), row.get("prune") or {}
    if prune != "ok" or not p:
        return prune
    text = "unpruned" if p.get("unpruned") else f"ok {p['macs_fraction']:.0%}"
    return text + (" (time bound)" if (p.get("time_bound") or {}).get("reached") else "")


def _left_alone_cell(row: dict) -> str:
    alone = (row.get("prune") or {}).get("left_alone") or {}
    return (f"{len(alone)}: " + "; ".join(f"{k} ({v[:50]})" for k, v in list(alone.items())[:2])) if alone else "0"


def _near_asked(row: dict) -> bool:
    """Pruned to the asked MACs within ±10% of the asked fraction (issue 37's bar)."""
    fraction = (row.get("prune") or {}).get("macs_fraction")
    return fraction is not None and abs(fraction - ASKED_MACS) <= 0.1 * ASKED_MACS


def summarize(rows: list[dict], seed: int, left_out: list[dict]) -> Measured:
    """One table row per drawn model (cells: top-1 agreement with the pruned PyTorch model); as metrics, the
    passes per target (counts and shares of the draw), the share of passing models within ±10% of the asked
    MACs and the failures by kind, which issue 37's bars read."""
    table = [{"model": r["model"].split("?")[0], "px": r["input"], "M params": round(r.get("params", 0) / 1e6, 1),
              "prune": _prune_cell(r), "left alone": _left_alone_cell(r),
              "MACs M before → after": (f"{r['macs_before'] / 1e6:.0f} → {r['macs_after'] / 1e6:.0f}"
                                        if "macs_after" in r else None),
              **{f"{t} {b} {p}": _cell(r["stages"].get(f"{t}/{b}/{p}")) for t, b in STEPS for p in PRECISIONS},
              "seconds": r.get("seconds")} for r in rows]
    passing = [r for r in rows if any(passes(r, t) for t in TARGETS)]
    kinds = [failure_kind(r) for r in rows]
    metrics: dict = {"models": len(rows), "left_out": len(left_out)}
    for t in TARGETS:
        key = t.replace("-", "_")
        metrics[f"pass_{key}"] = sum(passes(r, t) for r in rows)
        metrics[f"pass_fraction_{key}"] = round(metrics[f"pass_{key}"] / len(rows), 4) if rows else 0.0
    metrics["macs_within_10pct_share"] = (round(sum(map(_near_asked, passing)) / len(passing), 4) if passing
                                          else 0.0)
    metrics.update(errors=kinds.count("error"), tracebacks=kinds.count("traceback"), killed=kinds.count("killed"))
    notes = [f"seed {seed}: {len(rows)} drawn and run, {len(left_out)} drawn before them left out (too large for a "
             "2-core box or not buildable): " + "; ".join(f"{e['registry']}:{e['name']}" for e in left_out),
             "random weights, 6-class Fashion-MNIST RGB folder (72 images); a pass = prune + FP32/INT8 built and run "
             "on every backend of the target, FP32 agreement >= 99%; macs_within_10pct_share is over the models "
             "that pass on a target"]
    return Measured(rows=table, metrics=metrics, seeds=[seed], notes=notes,
                    details={"models": rows, "left_out": left_out})


def run_sample(n: int, seed: int, source: str = "all", timeout: float = 900, memory_gb: float = 12.0,
               work: Path = CACHE) -> tuple[list[dict], list[dict]]:
    """Draws, runs each model in its own process (``run_isolated``) and keeps the rows so far in
    ``work``/seed<S>.json after every model (a killed run leaves what it measured); returns (rows, left out)."""
    write_images()
    work.mkdir(parents=True, exist_ok=True)
    kept, left_out = draw(n, seed, source)
    rows = []
    for entry in kept:
        print(f"== {entry['source']} ({entry['px']} px)", flush=True)
        t0 = time.perf_counter()
        row = run_isolated(entry["source"], entry["px"], timeout, memory_gb)
        row.setdefault("seconds", round(time.perf_counter() - t0, 1))
        row["params"] = entry["params"]
        rows.append(row)
        print(json.dumps(row["stages"], default=str)[:600], flush=True)
        (work / f"seed{seed}.json").write_text(json.dumps({"seed": seed, "models": rows, "left_out": left_out},
                                                          indent=1, default=str))
    return rows, left_out


def run(work: Path, n: int = 40, seed: int | None = None, source: str = "all", timeout_s: float = 900,
        memory_gb: float = 12.0) -> Measured:
    """The kind ``zoo_sample``: a draw of ``n`` architectures (``seed`` None: the date's, so a scheduled run
    meets models no list names) through prune + FP32/INT8 on x86-cpu and rpi4."""
    seed = date_seed() if seed is None else seed
    rows, left_out = run_sample(n, seed, source, timeout_s, memory_gb, work)
    return summarize(rows, seed, left_out)


def print_sample(rows: list[dict], seed: int, left_out: list[dict]) -> None:
    """The ``--sample`` CLI's output: the same table and metrics as the suite's page."""
    from benchmarks.render import table

    measured = summarize(rows, seed, left_out)
    print("\n".join(["", *table(measured.rows), "", *table([{"metric": k, "value": v}
                                                             for k, v in measured.metrics.items()]),
                     "", *measured.notes]))
