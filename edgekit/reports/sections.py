"""The report's sections, built once from the manifest; report.md and report.html render the same list,
so the two can never disagree on what a bundle says (and ``edgekit bench`` keeps every section: it
re-renders from the manifest, where everything lives).

A section is a title and blocks: text lines (Markdown-ish: ``- `` bullets, ``**bold**``, ``code``) and
tables (columns + rows, with an id the HTML keeps for tests and links).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgekit.manifest import Manifest
from edgekit.reports.mixed import mixed_lines
from edgekit.reports.int8_debug import SECTION_COLUMNS, section_blocks
from edgekit.reports.robustness import robustness_markdown
from edgekit.reports.search import search_lines, search_table
from edgekit.reports.split import split_markdown
from edgekit.runtime.identity import describe_host
from edgekit.reports.tables import (ARTIFACT_COLUMNS, BENCH_COLUMNS, ESTIMATE_COLUMNS, GATE_COLUMNS, SELECTION_COLUMNS,
                                    STAGE_COLUMNS, artifact_rows, bench_rows, bench_title, drop_cell, estimate_rows,
                                    fmt, gate_rows, headline, selection_rows, skipped_label, stage_rows)
from edgekit.reports.reasons import explain_decision, explain_deploy, explain_skipped
from edgekit.vocab import Part

PLOT = "pareto.svg"          # written next to report.md (the HTML inlines it)
SEARCH_PLOT = "search.svg"   # the latency-budget search's trace


@dataclass
class Table:
    id: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)   # str | Table | Plot


@dataclass
class Plot:
    """A plot file next to the report: inline SVG in HTML, an image link in Markdown."""

    file: str = PLOT
    alt: str = "accuracy vs latency"
    missing: str = "no variant has both accuracy and latency"


def blocks_from_markdown(lines: list[str], table_id: str) -> list:
    """Text lines and tables of a Markdown fragment (its ``## `` title dropped): lets sections written as
    Markdown (split, robustness) render as real HTML tables too."""
    blocks, table, n = [], None, 0
    for line in lines:
        if line.startswith("## "):
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if table is None:
                table = Table(f"{table_id}-{n}", cells, [])
                n += 1
                blocks.append(table)
            elif not all(set(c) <= set("-:") for c in cells):
                table.rows.append(cells)
            continue
        table = None
        blocks.append(line)
    while blocks and blocks[0] == "":
        blocks.pop(0)
    return blocks


def summary_lines(manifest: Manifest) -> list[str]:
    model, data, final, target, host = manifest.model, manifest.data, manifest.reference, manifest.target, manifest.host
    inp = manifest.input_reference
    lines = [f"- model: `{model.source}` ({model.params:,} params, {model.macs / 1e6:.2f} MMACs in)",
             f"- data: `{data.source}` (train {data.train}, val {data.val}, test {data.test})",
             f"- target: **{target.name}** — {target.description} (runtime {target.runtime})",
             f"- recipe: `{manifest.recipe.name}`"]
    split_note = str(getattr(data, "test_split", "") or "")
    if split_note.startswith("the whole folder"):   # nothing trains: every labelled image is scored
        lines.insert(2, f"- evaluation set: {split_note}")
    if model.classes and model.classes.get("note"):
        lines.insert(1, f"- classes: {model.classes['note']}")
    if inp:
        lines.append(f"- input model (PyTorch, before any stage): top-1 {fmt(inp.accuracy.top1)}% on "
                     f"{inp.accuracy.samples} test images"
                     + (f" (validation {fmt(inp.val_top1)}%)" if inp.val_top1 is not None else ""))
    lines += [f"- final model (PyTorch, after the stages): top-1 {fmt(final.accuracy.top1)}% on "
              f"{final.accuracy.samples} test images",
              "- Δ input / Δ final: an artifact's top-1 change in points against the input model (what gates "
              "and deploy judge) and against the final FP32 model (what precision selection bounds)",
              f"- measured on: {describe_host(host)}, {host.get('os')}"]
    return lines


def phase_lines(manifest: Manifest) -> list[str]:
    """Where the run's wall clock went (manifest ``phases``); bundles written before it have none."""
    if not manifest.phases:
        return []
    parts = ", ".join(f"{name.replace('_', ' ')} {seconds:.0f} s" for name, seconds in manifest.phases.items())
    return [f"Wall clock {fmt(manifest.seconds, 0)} s: {parts}."]


def left_alone_lines(manifest: Manifest) -> list[str]:
    """What pruning left unpruned and why, and where its time bound stopped it (stage metrics
    ``unpruned``, ``auto_ignored``, ``time_bound``, ``stopped``)."""
    lines = []
    for i, stage in enumerate(manifest.stages, 1):
        m = stage.metrics
        where = f"stage {i} ({stage.name})"
        if m.get("unpruned"):
            lines.append(f"- {where}: passed through unpruned: {m['unpruned']}")
        bound = m.get("time_bound") or {}
        if bound.get("reached") and not m.get("unpruned"):
            lines.append(f"- {where}: time bound of {bound['max_seconds']:.0f} s reached; the model pruned so far "
                         f"was kept ({fmt(100 * m.get('macs_fraction', 1), 1)}% of the MACs)")
        if m.get("stopped"):
            lines.append(f"- {where}: stopped early: {m['stopped']}")
        lines += [f"- {where}: `{name}` kept unpruned: {why}" for name, why in (m.get("auto_ignored") or {}).items()]
    return lines


def portable_lines(manifest: Manifest) -> list[str]:
    """Per ExecuTorch artifact, the operators that did not lower to XNNPACK and run on ExecuTorch's portable
    (reference) kernels (``meta.portable_ops``): where its latency may go (users ask, executorch #1340)."""
    lines = []
    for a in manifest.artifacts:
        ops = a.meta.get("portable_ops")
        if ops is None:
            continue
        listed = ", ".join(f"`{op}` x{n}" for op, n in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"- {a.name}: " + (f"{sum(ops.values())} op(s) on portable kernels: {listed}" if ops
                                        else "every operator lowered to XNNPACK"))
    return lines


def build_sections(manifest: Manifest) -> list[Section]:
    out = [Section("headline", "Headline", headline(manifest)),
           Section("summary", "Summary", summary_lines(manifest)),
           Section("pareto", "Accuracy vs latency",
                   ["Every artifact measured (filled) or estimated (hollow); the input model's FP32 artifact and "
                    "the deployed one are marked.", Plot()])]
    if manifest.gates:
        verdict = "passed" if manifest.gates.passed else "FAILED"
        out.append(Section("gates", f"CI gates: {verdict}", [Table("gates", GATE_COLUMNS, gate_rows(manifest))]))
    if manifest.search:
        out.append(Section("search", "Latency budget search",
                           [*search_lines(manifest.search), Table("search", *search_table(manifest.search)),
                            Plot(SEARCH_PLOT, "latency-budget search trace", "no candidate was timed")]))
    out.append(Section("stages", "Stages", [Table("stages", STAGE_COLUMNS, stage_rows(manifest)), *phase_lines(manifest)]))
    left_alone = left_alone_lines(manifest)
    if left_alone:
        out.append(Section("left-alone", "Left alone by pruning", left_alone))
    out += [Section("artifacts", "Artifacts",
                    [f"Accuracy and latency are measured through each artifact's own runtime (batch "
                     f"{manifest.recipe.profile.batch}); 'on target' is the latency decisions use, with its basis.",
                     Table("artifacts", ARTIFACT_COLUMNS, artifact_rows(manifest))])]
    portable = portable_lines(manifest)
    if portable:
        out.append(Section("portable", "Not lowered to XNNPACK (ExecuTorch portable kernels)", portable))
    split = split_markdown(manifest)
    if split:
        out.append(Section("split", "Split (head on the device, tail on the server)", blocks_from_markdown(split, "split")))
    cal = manifest.calibration
    if cal:
        where = {"calibration": "the --calibration folder", "test": "the evaluation images (no train split, no "
                 "--calibration folder: this flatters the INT8 accuracy)"}.get(cal.split, f"the {cal.split} split")
        lines = [f"{cal.size} images from {where} (seed {cal.seed}, "
                 f"{'class-balanced' if cal.balanced else 'random'}), `{cal.path}` sha256 `{cal.sha256[:16]}…`"]
        if cal.parts and manifest.split:   # head and tail exist only in a split model (older bundles wrote parts for any)
            lines += [""] + [f"- {part}: {what}" for part, what in cal.parts.items()]
        out.append(Section("calibration", "Calibration", lines))
    deploy = manifest.deploy
    if deploy:
        drops = ("" if deploy.drop is None and deploy.drop_vs_final is None else
                 f" (Δ {drop_cell(deploy.drop)} pt vs the input model, {drop_cell(deploy.drop_vs_final)} pt vs the "
                 "final FP32 model)")
        out.append(Section("deploy", "Deploy", [f"**{deploy.artifact}** — top-1 {fmt(deploy.top1)}%{drops}, "
                                                f"{explain_deploy(deploy)}"]))
    for i, d in enumerate(manifest.precision_selection or []):
        out.append(Section(f"selection-{i}", f"Precision selection: {d.backend}" + ("" if d.part == Part.WHOLE else f" ({d.part})"),
                           [f"Chosen: **{d.chosen}** — {explain_decision(d)}",
                            Table(f"selection-{i}", SELECTION_COLUMNS, selection_rows(d))]))
    mixed = mixed_lines(manifest.artifacts)
    if mixed:
        out.append(Section("mixed", "Mixed precision", [
            "`precision: auto` kept the layers most sensitive to INT8 in float where a plain INT8 file agreed with "
            "the final model less than the bound asks (`compile.min_agreement`); such a file is chosen only when "
            "it is faster than its backend's FP32 file.", "", *mixed]))
    for i, debug in enumerate(manifest.int8_debug or []):
        lines, rows = section_blocks(debug)
        out.append(Section(f"int8-debug-{i}", f"INT8 per layer: {debug.artifact}",
                           [*lines, *([Table(f"int8-debug-{i}", SECTION_COLUMNS, rows)] if rows else [])]))
    if manifest.robustness:
        out.append(Section("robustness", "Robustness",
                           blocks_from_markdown(robustness_markdown(manifest.robustness).splitlines(), "robustness")))
    inp = manifest.input_reference
    refs = (inp.accuracy.top1 if inp else None, manifest.reference.accuracy.top1)
    for i, entry in enumerate(manifest.benchmarks):
        out.append(Section(f"bench-{i}", bench_title(entry),
                           [Table(f"bench-{i}", BENCH_COLUMNS, bench_rows(manifest.artifacts, entry, refs))]))
    rows = estimate_rows(manifest.artifacts, manifest.benchmarks)
    if rows:
        out.append(Section("estimates", "Estimated latency (not measured)",
                           ["Roofline estimates from per-layer MACs and bytes, the device's peak ops/s and memory "
                            "bandwidth from its target file, and runtime efficiency factors (per precision) calibrated "
                            "on measurements (benchmarks/results/estimator_x86.md). They are estimates, not "
                            "measurements.", Table("estimates", ESTIMATE_COLUMNS, rows)]))
    if manifest.skipped:
        out.append(Section("skipped", "Not produced", [f"- {skipped_label(s)}: {explain_skipped(s)}" for s in manifest.skipped]))
    return out
