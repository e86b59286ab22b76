"""Rows for the artifact and stage tables, shared by the terminal, Markdown and HTML reports, so the
three never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgekit.vocab import Basis, LatencyBasis, Part

if TYPE_CHECKING:  # the CLI imports this module before anything heavy (the manifest pulls in torch)
    from edgekit.manifest import ArtifactRecord, BenchEntry, Decision, Estimate, Manifest, Skipped


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


ARTIFACT_COLUMNS = ["artifact", "runtime", "precision", "executed", "top-1 %", "Δ input pt", "Δ final pt", "agree %",
                    "p50 ms", "p90 ms", "p99 ms", "size", "on target ms (basis)", "estimated ms"]


def drop_cell(value: float | None) -> str:
    """A drop in points shown as the change a reader expects: a loss is negative."""
    if value is None:
        return "—"
    return "0.00" if round(value, 2) == 0 else f"{-value:+.2f}"


def target_latency_cell(artifact, manifest: Manifest) -> str:
    from edgekit.decisions import latency_for

    value, basis = latency_for(artifact, manifest.target, manifest.benchmarks)
    return f"{value:.3f} ({basis})" if value is not None else str(basis)


def estimate_cell(estimate: Estimate | None) -> str:
    """An estimate is always labelled as one, with the device it is for, never in a measured column."""
    if not estimate or estimate.latency_ms is None:
        return "—"
    return f"{estimate.latency_ms:.3f} (estimated, {estimate.target or '?'})"


def input_label(artifact) -> str:
    """The input model's artifact, and how many test images scored it (a subset: ``INPUT_CHECK_IMAGES``)."""
    acc = artifact.metrics.accuracy
    return f" (input model, {acc.samples} test images)" if acc and acc.samples else " (input model)"


def artifact_rows(manifest: Manifest) -> list[list[str]]:
    rows = []
    for a in manifest.artifacts:
        m = a.metrics
        lat, acc, agree = m.latency, m.accuracy, m.agreement
        rows.append([a.name + (input_label(a) if a.part == Part.INPUT else ""), a.runtime, a.precision,
                     str(a.meta.get("executed_precision", "—")),
                     fmt(acc.top1) if acc else ("not scored" if m.not_scored else fmt(None)),
                     drop_cell(a.drops.vs_input), drop_cell(a.drops.vs_final),
                     fmt(agree.top1_agreement if agree else None),
                     fmt(lat.p50_ms if lat else None, 3), fmt(lat.p90_ms if lat else None, 3),
                     fmt(lat.p99_ms if lat else None, 3), human_bytes(a.bytes),
                     target_latency_cell(a, manifest), estimate_cell(m.estimate)])
    return rows


# The artifacts table that fits 80 columns: what a reader compares. The full table (ARTIFACT_COLUMNS) is the
# reports' and ``--wide``'s.
COMPACT_COLUMNS = ["artifact", "precision", "top-1 %", "Δ pt", "p50 ms", "size"]

# The mark after a compact p50: how the latency decisions use was obtained (``decisions.latency_for``).
BASIS_MARKS = {"m": "measured here", "d": "measured on device", "e": "estimated"}


def basis_mark(basis: Basis) -> str:
    """``m``, ``d`` or ``e`` for a ``latency_for`` basis ("" for none)."""
    return {LatencyBasis.MEASURED_HERE: "m", LatencyBasis.MEASURED_ON_DEVICE: "d",
            LatencyBasis.ESTIMATED: "e"}.get(basis.kind, "")


@dataclass
class CompactArtifacts:
    """Rows of the compact table, the deployed one's index, the artifacts left out of it (they do not
    compete: no accuracy or no latency) and a one-line legend of its marks."""

    rows: list[list[str]]
    deployed: int | None
    left_out: list[str]
    legend: str


def compact_artifacts(manifest: Manifest) -> CompactArtifacts:
    """One row per artifact that competes, its p50 the one decisions read (``latency_for``) with its basis
    marked: a reader must see whether a device number was measured or estimated, even at 80 columns."""
    from edgekit.decisions import latency_for
    from edgekit.reports.reasons import not_scored_text

    rows, left_out, marks, deployed = [], [], [], None
    deploy = manifest.deploy.artifact if manifest.deploy else None
    full = max((a.metrics.accuracy.samples or 0 for a in manifest.artifacts if a.metrics.accuracy), default=0)
    subset = False
    for a in manifest.artifacts:
        value, basis = latency_for(a, manifest.target, manifest.benchmarks)
        if a.top1 is None or value is None:
            why = (f"not scored: {not_scored_text(a.metrics.not_scored)}" if a.metrics.not_scored else
                   "no accuracy" if a.top1 is None else f"latency {basis}")
            left_out.append(f"{a.name} ({why})")
            continue
        mark = basis_mark(basis)
        marks += [mark] if mark and mark not in marks else []
        if a.name == deploy:
            deployed = len(rows)
        # a top-1 from fewer test images than the others (the input model's check: INPUT_CHECK_IMAGES) says so:
        # beside the others' full-split numbers it would read as the same measurement
        samples = a.metrics.accuracy.samples if a.metrics.accuracy else None
        short = bool(samples and samples < full)
        subset = subset or short
        rows.append([a.name, a.precision, fmt(a.top1) + (f" ({samples})" if short else ""),
                     drop_cell(a.drops.vs_input), f"{value:.3f} {mark}".strip(), human_bytes(a.bytes)])
    explained = ", ".join(f"{m} {BASIS_MARKS[m]}" for m in sorted(marks, key=list(BASIS_MARKS).index))
    legend = (f"p50 on {manifest.target.name}" + (f": {explained}" if explained else "")
              + " · Δ vs input model, pt" + (f" · (n): top-1 on n test images, not {full}" if subset else ""))
    return CompactArtifacts(rows, deployed, left_out, legend)


STAGE_COLUMNS = ["stage", "params", "MMACs", "top-1 % (split)", "seconds", "cached"]


def stage_rows(manifest: Manifest) -> list[list[str]]:
    return [[s.name, f"{s.params_after:,}", fmt(s.macs_after / 1e6, 2),
             f"{fmt(s.top1)} ({s.split}" + (f", {s.samples:,} images" if s.samples else "") + ")"
             if s.top1 is not None else fmt(None), fmt(s.seconds, 1),
             "yes" if s.cached else "no"] for s in manifest.stages]


BENCH_COLUMNS = ["artifact", "runtime", "precision", "top-1 %", "Δ input pt", "Δ final pt", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms",
                 "throughput", "peak MB", "status"]


def throughput_cell(throughput: list[dict]) -> str:
    return ", ".join(f"{t['images_per_s']:.0f}/s@{t['batch']}" for t in throughput) or "—"


def bench_title(entry: BenchEntry) -> str:
    d, data = entry.device, entry.data
    where = "this host" if entry.where == "local" else entry.where
    if entry.emulated:   # its accuracy is the emulated ISA's; its latency decides nothing
        where += " (emulated: its latency decides nothing)"
    return (f"Measured on {where}: {d.get('model', '?')}, {d.get('cpu', '?')}, {d.get('os', '?')} "
            f"({data.get('samples', 0)} images of {data.get('source', '?')}, {entry.created})")


def _runtime_precision(arts: dict[str, ArtifactRecord], name: str) -> list[str]:
    a = arts.get(name)
    return [a.runtime, a.precision] if a else ["?", "?"]


def bench_rows(artifacts: list[ArtifactRecord], entry: BenchEntry,
               references: tuple[float | None, float | None] = (None, None)) -> list[list[str]]:
    """Measured rows of one ``edgekit bench`` run (on this host or a device); ``references``: the input
    and final models' top-1, for the drops."""
    from edgekit.decisions import drop

    arts = {a.name: a for a in artifacts}
    rows = []
    for name, r in entry.results.items():
        if "error" in r or "skipped" in r:
            why = f"failed: {r['error']}" if "error" in r else f"skipped: {r['skipped']}"
            rows.append([name, *_runtime_precision(arts, name)] + ["—"] * 10 + [why])
            continue
        lat, acc = r.get("latency", {}), r.get("accuracy", {})
        top1 = acc.get("top1")
        rows.append([name, *_runtime_precision(arts, name), fmt(top1), drop_cell(drop(top1, references[0])),
                     drop_cell(drop(top1, references[1])), fmt(lat.get("p50_ms"), 3), fmt(lat.get("p90_ms"), 3), fmt(lat.get("p99_ms"), 3),
                     fmt(lat.get("mean_ms"), 3), fmt(lat.get("std_ms"), 3), throughput_cell(r.get("throughput", [])),
                     fmt(r.get("memory", {}).get("peak_rss_mb"), 1), "emulated" if entry.emulated else "measured"])
    return rows


ESTIMATE_COLUMNS = ["artifact", "runtime", "precision", "device", "estimated ms", "compute-bound layers", "model"]


def estimate_rows(artifacts: list[ArtifactRecord], benchmarks: list[BenchEntry]) -> list[list[str]]:
    """Every estimate in the bundle (artifacts and bench runs), in a table of its own."""
    from edgekit.manifest import Estimate

    rows = []
    seen = set()
    sources = [(a.name, a.metrics.estimate) for a in artifacts]
    arts = {a.name: a for a in artifacts}
    for b in benchmarks:
        sources += [(n, Estimate(**e)) for n, e in (b.estimates or {}).items()]
    for name, e in sources:
        if not e or e.latency_ms is None or (name, e.target) in seen:
            continue
        seen.add((name, e.target))
        rows.append([name, *_runtime_precision(arts, name), e.target or "?", f"{e.latency_ms:.3f} (estimated)",
                     f"{(e.compute_bound_fraction or 0) * 100:.0f}%", e.model or "roofline"])
    return rows


GATE_COLUMNS = ["gate", "limit", "value", "artifact", "Δ input pt", "Δ final pt", "result"]


def gate_rows(manifest: Manifest) -> list[list[str]]:
    results = manifest.gates.results if manifest.gates else []
    arts = {a.name: a for a in manifest.artifacts}
    rows = []
    for g in results:
        a = arts.get(g.artifact or "")
        rows.append([g.gate, fmt(g.limit), fmt(g.value, 3), g.artifact or "—",
                     drop_cell(a.drops.vs_input if a else None), drop_cell(a.drops.vs_final if a else None),
                     "pass" if g.passed else "FAIL"])
    return rows


SELECTION_COLUMNS = ["artifact", "top-1 %", "drop vs final pt (bound)", "Δ input pt", "p50 ms", "latency basis",
                     "chosen", "why"]


def selection_rows(decision: Decision) -> list[list[str]]:
    """Candidates of one ``precision: auto`` decision (one part and backend)."""
    from edgekit.reports.reasons import explain_candidate

    return [[r.artifact, fmt(r.top1), fmt(r.drop), drop_cell(r.drop_vs_input), fmt(r.p50_ms, 3), str(r.latency_source),
             "yes" if r.chosen else ("kept" if r.artifact in decision.also_kept else ""), explain_candidate(r, decision)]
            for r in decision.candidates]


def reference_title(manifest: Manifest) -> str:
    inp, final = manifest.input_reference, manifest.reference
    text = f"final model PyTorch top-1 {fmt(final.accuracy.top1)}%"
    return f"artifacts (input model top-1 {fmt(inp.accuracy.top1)}%, {text})" if inp else f"artifacts ({text})"


def input_artifact(manifest: Manifest):
    return next((a for a in manifest.artifacts if a.part == Part.INPUT), None)


def _times(before: float | None, after: float | None) -> str:
    if not before or not after:
        return "—"
    return f"×{before / after:.1f}"


def headline(manifest: Manifest) -> list[str]:
    """Input model -> deployed artifact, in five lines: what a reader wants before any table."""
    from edgekit.decisions import latency_for

    inp, final, deploy = manifest.input_reference, manifest.reference, manifest.deploy
    if inp is None:
        return ["(this bundle predates the input-model reference: no headline)"]
    deployed = None
    if deploy:
        deployed = next((a for a in manifest.artifacts if a.name == deploy.artifact), None)
    if deployed is None:
        return ([f"input model top-1 {fmt(inp.accuracy.top1)}%; no artifact was chosen for deploy"
                 + (":" if manifest.no_deploy else "")] + [f"- {why}" for why in manifest.no_deploy or []])
    base = input_artifact(manifest)
    top1 = deployed.top1
    lines = [f"input model -> {deployed.name} (deployed on {manifest.target.name})",
             f"- top-1: {fmt(inp.accuracy.top1)}% -> {fmt(top1)}% (Δ {drop_cell(deployed.drops.vs_input)} pt vs the "
             f"input model, {drop_cell(deployed.drops.vs_final)} pt vs the final FP32 model)",
             f"- MACs: {inp.macs / 1e6:.2f} M -> {final.macs / 1e6:.2f} M ({_times(inp.macs, final.macs)} fewer); "
             f"params: {inp.params:,} -> {final.params:,} ({_times(inp.params, final.params)} fewer)"]
    if base is not None:
        lines.append(f"- size: {human_bytes(base.bytes)} ({base.name}) -> {human_bytes(deployed.bytes)} "
                     f"({_times(base.bytes, deployed.bytes)} smaller)")
        before, basis_in = latency_for(base, manifest.target, manifest.benchmarks)
        after, basis_out = latency_for(deployed, manifest.target, manifest.benchmarks)
        if before is not None and after is not None:
            basis = basis_out if basis_in == basis_out else f"input {basis_in}, deployed {basis_out}: mixed bases"
            lines.append(f"- latency on {manifest.target.name}: {before:.3f} ms -> {after:.3f} ms ({basis}); "
                         f"speed-up {_times(before, after)}")
        else:
            lines.append(f"- latency on {manifest.target.name}: {basis_in if before is None else basis_out}")
    return lines


def skipped_label(skipped: Skipped) -> str:
    return f"{skipped.part + ' ' if skipped.part else ''}{skipped.backend} {skipped.precision}"
