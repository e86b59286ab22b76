"""The report's mixed-precision section in English, from the manifest's artifacts (``meta.mixed`` of each mixed
INT8/float file, ``meta.agreement_check`` of each INT8 file checked; ``edgekit.mixed_precision`` measures them)."""

from __future__ import annotations

from edgekit.vocab import Precision


def _bound(bound: dict) -> str:
    agree = bound.get("min_agreement")
    return f"bound: drop ≤ {bound['max_drop']:g} pt" + (f", agreement ≥ {agree:g}%" if agree is not None else "")


def mixed_lines(artifacts) -> list[str]:
    """The report's mixed-precision lines (one per mixed file, and per INT8 file whose search gave none), in
    English, from the manifest's artifacts (records or ``Artifact``s)."""
    lines = []
    for a in artifacts:
        info = a.meta.get("mixed") if a.precision == Precision.MIXED else None
        if info:
            lat = info.get("latency") or {}
            cost = (f"; p50 {lat['p50_ms']:.3f} ms = {lat['vs_int8']:.2f}× {info['int8_artifact']}, "
                    f"{lat['vs_fp32']:.2f}× {info['fp32_artifact']}" if lat.get("vs_int8") and lat.get("vs_fp32") else "")
            layers = ", ".join(f"`{x}`" for x in info["float_layers"])
            lines.append(f"- **{a.name}**: kept in float {layers} ({len(info['float_layers'])} layer(s), the most "
                         f"sensitive by per-layer SQNR); top-1 agreement with the final model on {info['images']} "
                         f"validation images {info['agreement_int8']:.2f}% ({info['int8_artifact']}) → "
                         f"{info['agreement']:.2f}%, top-1 drop {info['drop_int8']:+.2f} → {info['drop']:+.2f} pt "
                         f"({_bound(info['bound'])}{'' if info['meets_bound'] else ', not reached'}){cost}")
        check = a.meta.get("agreement_check") or {}
        if check.get("mixed") is not None:
            lines.append(f"- **{a.name}**: agreement {check['top1_agreement']:.2f}%, drop {check['drop']:+.2f} pt "
                         f"({_bound(check)} not met), and no layer kept in float raised the agreement: no mixed file")
    return lines
