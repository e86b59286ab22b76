"""Rows for the artifact and stage tables, shared by the terminal, Markdown and HTML reports, so the
three never disagree."""

from __future__ import annotations


def fmt(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def human_bytes(n: int | None) -> str:
    if not n:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


ARTIFACT_COLUMNS = ["artifact", "runtime", "precision", "executed", "top-1 %", "agree %", "p50 ms", "p90 ms",
                    "p99 ms", "size", "latency", "estimated ms"]


def estimate_cell(estimate: dict | None) -> str:
    """An estimate is always labelled as one, with the device it is for, never in a measured column."""
    if not estimate or estimate.get("latency_ms") is None:
        return "—"
    return f"{estimate['latency_ms']:.3f} (estimated, {estimate.get('target', '?')})"


def artifact_rows(manifest: dict) -> list[list[str]]:
    rows = []
    for a in manifest.get("artifacts", []):
        m = a.get("metrics", {})
        lat, acc, agree = m.get("latency", {}), m.get("accuracy", {}), m.get("agreement", {})
        rows.append([a["name"], a["runtime"], a["precision"], str(a.get("meta", {}).get("executed_precision", "—")),
                     fmt(acc.get("top1")), fmt(agree.get("top1_agreement")), fmt(lat.get("p50_ms"), 3),
                     fmt(lat.get("p90_ms"), 3), fmt(lat.get("p99_ms"), 3), human_bytes(a.get("bytes")),
                     f"measured ({lat.get('measured', 'host')})" if lat else
                     ("not run here" if not a.get("runnable_here", True) else "—"),
                     estimate_cell(m.get("estimate"))])
    return rows


STAGE_COLUMNS = ["stage", "params", "MMACs", "val top-1 %", "seconds", "cached"]


def stage_rows(manifest: dict) -> list[list[str]]:
    rows = []
    for s in manifest.get("stages", []):
        rows.append([s["name"], f"{s['params_after']:,}", fmt(s["macs_after"] / 1e6, 2), fmt(s.get("val_top1")),
                     fmt(s.get("seconds"), 1), "yes" if s.get("cached") else "no"])
    return rows


BENCH_COLUMNS = ["artifact", "runtime", "precision", "top-1 %", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms",
                 "throughput", "peak MB", "status"]


def throughput_cell(throughput: list[dict]) -> str:
    return ", ".join(f"{t['images_per_s']:.0f}/s@{t['batch']}" for t in throughput) or "—"


def bench_title(entry: dict) -> str:
    d = entry.get("device", {})
    data = entry.get("data", {})
    where = "this host" if entry.get("where") == "local" else entry.get("where")
    return (f"Measured on {where}: {d.get('model', '?')}, {d.get('cpu', '?')}, {d.get('os', '?')} "
            f"({data.get('samples', 0)} images of {data.get('source', '?')}, {entry.get('created', '')})")


def bench_rows(manifest: dict, entry: dict) -> list[list[str]]:
    """Measured rows of one ``edgekit bench`` run (on this host or a device)."""
    arts = {a["name"]: a for a in manifest.get("artifacts", [])}
    rows = []
    for name, r in entry.get("results", {}).items():
        a = arts.get(name, {})
        if "error" in r:
            rows.append([name, a.get("runtime", "?"), a.get("precision", "?")] + ["—"] * 8 + [f"failed: {r['error']}"])
            continue
        lat, acc = r.get("latency", {}), r.get("accuracy", {})
        rows.append([name, a.get("runtime", "?"), a.get("precision", "?"), fmt(acc.get("top1")),
                     fmt(lat.get("p50_ms"), 3), fmt(lat.get("p90_ms"), 3), fmt(lat.get("p99_ms"), 3),
                     fmt(lat.get("mean_ms"), 3), fmt(lat.get("std_ms"), 3), throughput_cell(r.get("throughput", [])),
                     fmt(r.get("memory", {}).get("peak_rss_mb"), 1), "measured"])
    return rows


ESTIMATE_COLUMNS = ["artifact", "runtime", "precision", "device", "estimated ms", "compute-bound layers", "model"]


def estimate_rows(manifest: dict) -> list[list[str]]:
    """Every estimate in the bundle (artifacts and bench runs), in a table of its own."""
    rows = []
    seen = set()
    sources = [(a["name"], a, a.get("metrics", {}).get("estimate")) for a in manifest.get("artifacts", [])]
    arts = {a["name"]: a for a in manifest.get("artifacts", [])}
    for b in manifest.get("benchmarks", []):
        sources += [(n, arts.get(n, {}), e) for n, e in b.get("estimates", {}).items()]
    for name, a, e in sources:
        if not e or e.get("latency_ms") is None or (name, e.get("target")) in seen:
            continue
        seen.add((name, e.get("target")))
        rows.append([name, a.get("runtime", "?"), a.get("precision", "?"), e.get("target", "?"),
                     f"{e['latency_ms']:.3f} (estimated)", f"{e.get('compute_bound_fraction', 0) * 100:.0f}%",
                     e.get("model", "roofline")])
    return rows


GATE_COLUMNS = ["gate", "limit", "value", "artifact", "result"]


def gate_rows(manifest: dict) -> list[list[str]]:
    return [[g["gate"], fmt(g["limit"]), fmt(g.get("value"), 3), g.get("artifact") or "—",
             "pass" if g["passed"] else "FAIL"] for g in manifest.get("gates", {}).get("results", [])]


SELECTION_COLUMNS = ["artifact", "top-1 %", "drop pt", "p50 ms", "latency", "chosen", "why"]


def selection_rows(decision: dict) -> list[list[str]]:
    """Candidates of one ``precision: auto`` decision (one part and backend)."""
    return [[r["artifact"], fmt(r.get("top1")), fmt(r.get("drop")), fmt(r.get("p50_ms"), 3), r["latency_source"],
             "yes" if r["chosen"] else "", r["why"]] for r in decision["candidates"]]


def skipped_label(skipped: dict) -> str:
    part = skipped.get("part")
    return f"{part + ' ' if part else ''}{skipped['backend']} {skipped['precision']}"
