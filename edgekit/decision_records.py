"""The rows decisions produce, typed: a precision-selection candidate, a per-part-and-backend choice, the
deploy choice, a build that was not made. Each says why with a ``ReasonCode`` and carries the numbers the
English needs; ``edgekit.reports.reasons`` renders the English (reports, the CLI, and the ``detail`` string
the manifest keeps so its JSON reads on its own). Tests and code read the codes and numbers, never the prose.

These are the manifest's own sections (``edgekit.manifest`` re-exports them): a bundle written before the
rows had codes carries English in ``reason`` (or a candidate's ``why``); it still reads, with ``reason`` None
and its English in ``detail``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekit.vocab import Basis, Part, Precision, ReasonCode


class Row(BaseModel):
    """A decision row: known fields typed, extra keys kept; ``reason`` a code, ``detail`` its English."""

    model_config = ConfigDict(extra="allow")

    reason: ReasonCode | None = None      # None: a bundle written before reasons had codes (see ``detail``)
    detail: str = ""                      # the reason in English (``edgekit.reports.reasons``), for readers

    @model_validator(mode="before")
    @classmethod
    def _english_reason(cls, data: Any) -> Any:
        """An older bundle's English reason (or a candidate's ``why``) becomes ``detail``, with no code."""
        if not isinstance(data, dict):
            return data
        text = data.get("reason")
        if isinstance(text, str) and text not in {code.value for code in ReasonCode}:
            data = {**data, "reason": None, "detail": data.get("detail") or text}
        if "why" in data and "detail" not in data:
            data = {k: v for k, v in data.items() if k != "why"} | {"detail": data["why"]}
        return data


class NotScored(BaseModel):
    """Why a file was not scored (``profile.score: needed``): ``ratio`` times the p50 of ``faster``, a file of
    the same backend already within ``bound`` points of the final FP32 model, so no decision can choose it."""

    faster: str
    ratio: float
    bound: float


class TieBreak(BaseModel):
    """A measured near-tie broken by accuracy: the faster candidate the chosen one was tied with."""

    artifact: str
    p50_ms: float
    gain_pt: float                        # how many points more accurate the chosen one is


class Candidate(Row):
    artifact: str
    precision: Precision
    top1: float | None = None
    drop: float | None = None             # vs the final FP32 model: what the bound is on
    drop_vs_input: float | None = None
    p50_ms: float | None = None           # latency_for(artifact, target, benchmarks), whatever its basis
    latency_source: Basis = Basis.not_available()
    eligible: bool = False
    chosen: bool = False
    not_scored: NotScored | str | None = None   # str: a bundle written before it was a record


class Decision(Row):
    """Per part and backend: the candidate precision selection chose, and why (``reason``)."""

    part: Part = Part.WHOLE
    backend: str
    chosen: str | None = None
    max_accuracy_drop: float
    tied_with: TieBreak | None = None     # FASTEST_WITHIN_BOUND by a measured near-tie
    estimate_error: float | None = None   # relative; the estimator's, behind ``also_kept``
    also_kept: list[str] = Field(default_factory=list)   # estimates within their error: measure on the device
    candidates: list[Candidate] = Field(default_factory=list)

    def chosen_candidate(self) -> Candidate | None:
        return next((c for c in self.candidates if c.chosen), None)


class Alternative(BaseModel):
    """Another backend's choice the deploy decision ranked against."""

    artifact: str
    p50_ms: float
    latency_source: Basis


class Deploy(Row):
    artifact: str
    top1: float | None = None
    drop: float | None = None             # vs the input model
    drop_vs_final: float | None = None
    p50_ms: float | None = None
    latency_source: Basis | None = None
    tied_with: TieBreak | None = None
    others: list[Alternative] = Field(default_factory=list)
    also_kept: list[str] = Field(default_factory=list)


class Skipped(Row):
    """A (backend, precision) the plan did not build (``precision`` ``*``: none of its precisions)."""

    backend: str
    precision: Precision | Literal["*"]
    part: Part | None = None              # set for a split tail's own plan
    target: str | None = None             # TARGET_LACKS_PRECISION: the target
    extra: str | None = None              # RUNTIME_NOT_INSTALLED: the edgekit extra that installs it
