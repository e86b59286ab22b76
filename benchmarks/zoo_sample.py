"""Random draws for the zoo (issue 37): what users bring is any architecture the registries hold, so
coverage is measured on a seeded random draw from ``timm.list_models()`` and torchvision's classifiers,
not on a list the tool was tuned to.

A drawn architecture is kept when this box can run it: parameters <= ``MAX_PARAMS`` and MACs at its
native input size <= ``MAX_MACS``, both counted on the meta device (no weights allocated, no download);
one that cannot even be built is left out with the reason. Each kept model runs through the zoo's own
``run_one`` (prune to 50% MACs, FP32 + INT8 on x86-cpu and rpi4) in its own process under a wall-clock
cap, at 64 px where it accepts that size (directly, or through ``img_size``/``image_size``), else at its
native size. Results: benchmarks/results/zoo_sample_seed<S>.{json,md}.

    python -m benchmarks.zoo --sample 6 --seed 1
    python -m benchmarks.zoo --sample 40 --seed 7 --source timm --timeout 900
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from pathlib import Path

from benchmarks.zoo import PRECISIONS, RESULTS, STEPS, TM, TV, passes, run_isolated, write_images

MAX_PARAMS = 30e6
MAX_MACS = 5e9
SMALL_PX = 64
ASKED_MACS = 0.5


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
    if stage is None:
        return "—"
    if isinstance(stage, str):
        return "ok" if stage == "ok" else stage.replace("|", "/")[:80]
    if stage["status"] != "ok":
        return stage["status"].replace("|", "/")[:80]
    return f"ok {stage['agreement']:.0f}%"


def summary(rows: list[dict], seed: int, left_out: list[dict]) -> list[str]:
    pruned = [r for r in rows if r["stages"].get("prune") == "ok" and r.get("prune")]
    near = [r for r in pruned if abs(r["prune"]["macs_fraction"] - ASKED_MACS) <= 0.1 * ASKED_MACS]
    kinds = [failure_kind(r) for r in rows]
    return [f"Seed {seed}: {len(rows)} drawn and run ({len(left_out)} drawn before them left out: too large or not "
            f"buildable). **{sum(passes(r, 'x86-cpu') for r in rows)}/{len(rows)}** pass prune + FP32/INT8 on x86-cpu, "
            f"**{sum(passes(r, 'rpi4') for r in rows)}/{len(rows)}** on rpi4 (FP32 agreement >= 99%); pruned to "
            f"{ASKED_MACS:.0%} ± 10% of the MACs: {len(near)}/{len(pruned)}; failures: "
            f"{kinds.count('error')} one-line error(s), {kinds.count('traceback')} traceback(s), "
            f"{kinds.count('killed')} killed."]


def write_sample(rows: list[dict], seed: int, left_out: list[dict]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"zoo_sample_seed{seed}"
    stem.with_suffix(".json").write_text(json.dumps({"seed": seed, "models": rows, "left_out": left_out}, indent=1,
                                                    default=str))
    lines = ["# Zoo, random draw: prune to 50% MACs, FP32 + INT8 on x86-cpu and rpi4", "", *summary(rows, seed, left_out),
             "", "Random weights, 6-class Fashion-MNIST RGB folder; cells: top-1 agreement with the pruned PyTorch "
             "model. `python -m benchmarks.zoo --sample N --seed S` regenerates this file.", "",
             "| model | px | M params | prune | left alone | MACs M before → after | " + " | ".join(
                 f"{t} {b} {p}" for t, b in STEPS for p in PRECISIONS) + " | s |",
             "|---|---|---|---|---|---|" + "---|" * (len(STEPS) * len(PRECISIONS)) + "---|"]
    for r in rows:
        p = r.get("prune") or {}
        prune = _cell(r["stages"].get("prune"))
        if prune == "ok" and p:
            prune = "unpruned" if p.get("unpruned") else f"ok {p['macs_fraction']:.0%}"
            if (p.get("time_bound") or {}).get("reached"):
                prune += " (time bound)"
        alone = p.get("left_alone") or {}
        alone_cell = (f"{len(alone)}: " + "; ".join(f"{k} ({v[:50]})" for k, v in list(alone.items())[:2])
                      if alone else "0")
        macs = f"{r['macs_before'] / 1e6:.0f} → {r['macs_after'] / 1e6:.0f}" if "macs_after" in r else "—"
        cells = [_cell(r["stages"].get(f"{t}/{b}/{q}")) for t, b in STEPS for q in PRECISIONS]
        lines.append(f"| {r['model'].split('?')[0]} | {r['input']} | {r.get('params', 0) / 1e6:.1f} | {prune} | "
                     f"{alone_cell.replace('|', '/')} | {macs} | " + " | ".join(cells) + f" | {r.get('seconds', '—')} |")
    if left_out:
        lines += ["", "Drawn and left out:", ""] + [f"- {e['registry']}:{e['name']}: {e['left_out']}" for e in left_out]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem.with_suffix(".md")


def run_sample(n: int, seed: int, source: str = "all", timeout: float = 900, memory_gb: float = 12.0) -> list[dict]:
    """Draw, run each in its own process (``run_isolated``), write the table after every model."""
    write_images()
    (RESULTS / "zoo_logs").mkdir(parents=True, exist_ok=True)
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
        write_sample(rows, seed, left_out)
    return rows
