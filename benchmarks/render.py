"""The one markdown renderer of the benchmark suite: a result file becomes a page (its table, its named values,
its bars), and the stored results become the index, benchmarks/results/README.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks.schema import Result, ScenarioTable


def cell(value: Any) -> str:
    """One table cell: numbers at four significant digits (never in exponent form), flags as yes/no,
    a list of labels joined with " / " (e.g. one per seed, where a label differs between seeds), other
    structures as compact JSON; pipes escaped."""
    if value is None:
        return "—"
    if isinstance(value, dict) and {"mean", "min", "max"} <= set(value):   # a number over seeds (schema.Spread)
        text = f"{cell(value['mean'])} ({cell(value['min'])}–{cell(value['max'])})"
        return text + (f", {value['of_runs']} runs" if value.get("of_runs") else "")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        text = f"{value:.4g}"
        if "e" in text:
            text = f"{value:.1f}" if abs(value) >= 1 else f"{value:.6f}".rstrip("0")
        return text
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        text = " / ".join(value)   # as combine_runs keeps a label that differs between seeds: in seed order
    elif isinstance(value, (list, dict)):
        text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]]) -> list[str]:
    """A markdown table over the union of the rows' keys, in the order they first appear."""
    if not rows:
        return []
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def render_result(result: Result) -> str:
    """A result's page."""
    met = sum(b.met for b in result.bars)
    lines = [f"# {result.scenario}" + (" (quick: a smoke test, not a result)" if result.quick else ""), "",
             result.description, "",
             f"- host: {result.host.describe()}" + (f"; {result.host.features}" if result.host.features else ""),
             f"- date: {result.date}" + (f", commit {result.commit[:12]}" if result.commit else ""),
             f"- command: `{result.command}`",
             f"- parameters: `{json.dumps(result.params, default=str)}`"]
    if result.seeds:
        lines.append(f"- seeds: {', '.join(map(str, result.seeds))}"
                     + (" (numbers over seeds: mean (min–max); bars judged on the mean, beside the worst run)"
                        if len(result.seeds) > 1 else ""))
    lines += [f"- {note}" for note in result.notes]
    if result.rows:
        lines += ["", *table(result.rows)]
    if result.metrics:
        lines += ["", *table([{"metric": k, "value": v} if not result.spread else
                              {"metric": k, "mean": v, "min–max": spread_text(result.spread.get(k)),
                               "runs": result.spread[k].runs if k in result.spread else None}
                              for k, v in result.metrics.items()])]
    if result.bars:
        worst = any(b.worst is not None for b in result.bars)
        lines += ["", f"Bars: {met} of {len(result.bars)} met" + (" (on the mean over seeds)." if worst else "."), "",
                  *table([{"bar": b.name, "value": b.value, **({"worst run": b.worst} if worst else {}),
                           "threshold": b.threshold, "met": b.met} for b in result.bars])]
    return "\n".join(lines) + "\n"


def spread_text(spread) -> str | None:
    return None if spread is None else f"{cell(spread.min)}–{cell(spread.max)}"


def headline(result: Result) -> str:
    """The index's number for a result: its first bar's metric as mean (min–max) over the seeds."""
    bar = next(iter(result.bars), None)
    if bar is None:
        return "—"
    metric = bar.name.removeprefix("min_").removeprefix("max_")
    spread = result.spread.get(metric)
    return f"{metric} {cell(bar.value)}" + (f" ({spread_text(spread)})" if spread else "")


def render_index(results: list[Result], scenarios: ScenarioTable, root: Path) -> str:
    """benchmarks/results/README.md: for each scenario of the table, its latest result on each host (newest
    first), linked; scenarios never run say so."""
    by_scenario: dict[str, list[Result]] = {}
    for r in sorted(results, key=lambda r: r.date, reverse=True):
        by_scenario.setdefault(r.scenario, []).append(r)
    lines = ["# Benchmark results", "",
             "The latest result of each scenario on each host (`python -m benchmarks run SCENARIO` writes "
             "`<scenario>/<host>.json` and `.md`; `python -m benchmarks index` rewrites this page). Earlier runs "
             "are in the git history of these files. Scenarios: `benchmarks/scenarios.yaml`.", "",
             "Numbers over seeds are the mean (min–max); bars are judged on the mean.", "",
             "| scenario | what | host | date | seeds | first bar (mean, min–max) | bars met | result |",
             "|---|---|---|---|---|---|---|---|"]
    known = [s.name for s in scenarios.scenarios]
    for name in known + sorted(set(by_scenario) - set(known)):
        scenario = next((s for s in scenarios.scenarios if s.name == name), None)
        what = scenario.description if scenario else "(no longer in scenarios.yaml)"
        found = by_scenario.get(name, [])
        if not found:
            lines.append(f"| {name} | {cell(what)} | — | — | — | — | — | not run yet |")
        for r in found:
            bars = f"{sum(b.met for b in r.bars)}/{len(r.bars)}" if r.bars else "—"
            link = f"[{r.stem}.md]({name}/{r.stem}.md)"
            seeds = ", ".join(map(str, r.seeds)) if r.seeds else "—"
            lines.append(f"| {name} | {cell(what)} | {cell(r.host.describe())}{' (quick)' if r.quick else ''} | "
                         f"{r.date[:10]} | {seeds} | {headline(r)} | {bars} | {link} |")
    return "\n".join(lines) + "\n"
