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
                    "p99 ms", "size", "latency"]


def artifact_rows(manifest: dict) -> list[list[str]]:
    rows = []
    for a in manifest.get("artifacts", []):
        m = a.get("metrics", {})
        lat, acc, agree = m.get("latency", {}), m.get("accuracy", {}), m.get("agreement", {})
        rows.append([a["name"], a["runtime"], a["precision"], str(a.get("meta", {}).get("executed_precision", "—")),
                     fmt(acc.get("top1")), fmt(agree.get("top1_agreement")), fmt(lat.get("p50_ms"), 3),
                     fmt(lat.get("p90_ms"), 3), fmt(lat.get("p99_ms"), 3), human_bytes(a.get("bytes")),
                     lat.get("measured", "not run") if lat else ("not run here" if not a.get("runnable_here", True)
                                                                 else "—")])
    return rows


STAGE_COLUMNS = ["stage", "params", "MMACs", "val top-1 %", "seconds", "cached"]


def stage_rows(manifest: dict) -> list[list[str]]:
    rows = []
    for s in manifest.get("stages", []):
        rows.append([s["name"], f"{s['params_after']:,}", fmt(s["macs_after"] / 1e6, 2), fmt(s.get("val_top1")),
                     fmt(s.get("seconds"), 1), "yes" if s.get("cached") else "no"])
    return rows
