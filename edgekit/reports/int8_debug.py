"""The per-layer INT8 debugger in English and tables: the rows ``edgekit debug`` prints and the report section
compress adds for an INT8 artifact over its bound (``manifest.int8_debug``)."""

from __future__ import annotations

from edgekit.manifest import DebugLayer, Int8Debug
from edgekit.quant_debug.records import FLOOR_DB, STEP_DB, DivergenceRule, LayerError

DEBUG_COLUMNS = ["#", "layer", "op", "SQNR dB", "tensor dB", "cosine", ""]
SECTION_COLUMNS = ["#", "layer", "op", "SQNR dB", "cosine", ""]
MARK = "◀ first divergence"


def _db(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.1f}"


def _cos(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.4f}"


def layer_rows(layers: list[LayerError] | tuple[LayerError, ...], first: int | None) -> list[list[str]]:
    """One row per layer in graph order; the first divergence marked."""
    return [[str(i), l.label, l.op, _db(l.sqnr_db), _db(l.tensor_sqnr_db), _cos(l.cosine), MARK if i == first else ""]
            for i, l in enumerate(layers)]


def explain_divergence(layer: str, sqnr_db: float, before_db: float | None, rule: DivergenceRule | str | None,
                       floor_db: float = FLOOR_DB, step_db: float = STEP_DB) -> str:
    if rule is None:
        return f"no layer falls under {floor_db:.0f} dB: INT8 tracks FP32 through the whole network"
    if DivergenceRule(rule) == DivergenceRule.STEP:
        was = f"from {before_db:.1f} dB in the layer before" if before_db is not None else "at the first layer"
        return (f"first divergence: {layer} — {sqnr_db:.1f} dB {was} (under {floor_db:.0f} dB, a step of "
                f"{step_db:.0f} dB or more: this layer's output is what INT8 breaks)")
    return (f"first layer under {floor_db:.0f} dB: {layer} ({sqnr_db:.1f} dB) after a gradual decline, no single "
            "layer breaks: the error accumulates")


def section_blocks(debug: Int8Debug) -> tuple[list[str], list[list[str]]]:
    """(text lines, worst-layer rows) for one artifact's section."""
    if debug.error:
        return [f"Per-layer debugging of **{debug.artifact}** failed: {debug.error}"], []
    lines = [f"The {len(debug.worst)} layers with the lowest SQNR and the first divergence, in graph order. "
             f"**{debug.artifact}** against **{debug.reference}** ({debug.runtime}), {debug.images} calibration "
             f"images, {debug.layers} layers; SQNR is the median channel's (dB), cosine over the whole tensor. "
             f"Every layer: `{debug.json_path}`" + (f", plot `{debug.plot}`." if debug.plot else ".")]
    d = debug.divergence
    if d is not None:
        lines.append(explain_divergence(d.layer, d.sqnr_db if d.sqnr_db is not None else float("nan"),
                                        debug.divergence_before_db, debug.divergence_rule))
    else:
        lines.append(explain_divergence("", 0.0, None, None))
    shown: list[DebugLayer] = list(debug.worst)
    if d is not None and all(l.index != d.index for l in shown):
        shown.append(d)
    shown.sort(key=lambda l: -1 if l.index is None else l.index)   # graph order: the divergence, then what follows
    rows = [["—" if l.index is None else str(l.index), l.layer, l.op, _db(l.sqnr_db), _cos(l.cosine), MARK if d is not None and l.index == d.index else ""]
            for l in shown]
    return lines, rows
