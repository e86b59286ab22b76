"""edgekit's typed vocabulary: the closed sets of words the manifest, the decisions and the reports share.

Each is a ``StrEnum`` whose values are the strings manifests have always held, so a manifest's JSON is the
same as before and an old bundle still reads; code compares members (``a.part is Part.INPUT``), never
literals, and a new word is added here once. ``Basis`` is a latency's basis with where it was measured or
what it was estimated for; it reads and writes the same one string the manifest has always held
(``"measured on the device (ssh://pi@rpi4)"``), so nothing downstream parses it back out of prose.

``ReasonCode`` says why a decision row (a precision-selection candidate, a per-backend choice, the deploy
choice, a build that was skipped) came out as it did; the rows keep the numbers the English needs and
``edgekit.reports.reasons`` renders the English, for reports and the CLI only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Part(StrEnum):
    """What a compile unit (and each artifact built from it) is of."""

    WHOLE = "whole"      # the final model, whole
    HEAD = "head"        # a split model's device part (artifacts/head/)
    TAIL = "tail"        # a split model's server part (artifacts/tail/), run on this host
    INPUT = "input"      # the input model itself, FP32: a reference for the report, never a candidate

    @property
    def is_split(self) -> bool:
        return self in (Part.HEAD, Part.TAIL)


class Precision(StrEnum):
    """A precision an artifact is built at (what was asked: ``meta.executed_precision`` says what runs)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    MIXED = "mixed"      # INT8 with the layers most sensitive to it kept in float (``precision: auto``; meta.mixed)


class PrecisionChoice(StrEnum):
    """What a recipe's ``compile.precisions`` may ask for besides a ``Precision``; never an artifact's."""

    AUTO = "auto"        # every precision the target supports, measured; precision selection chooses
    TARGET = "target"    # the target's default precision


class Amp(StrEnum):
    """Mixed precision for training on CUDA (``train.amp``); on the CPU ``train.bf16`` decides."""

    AUTO = "auto"        # bf16 where the GPU supports it, else fp16 with a gradient scaler
    BF16 = "bf16"
    FP16 = "fp16"        # with a gradient scaler
    OFF = "off"


class Runtime(StrEnum):
    """The runtime an artifact runs on (``Artifact.runtime``; ``edgekit.runtime`` opens a session per runtime).

    A backend is named after what it builds and may differ: the ``tflite`` backend builds for ``litert``."""

    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    LITERT = "litert"
    TENSORRT = "tensorrt"
    EXECUTORCH = "executorch"


class LatencyBasis(StrEnum):
    """What a latency figure is: which number a decision ranks on, and how far to trust it."""

    MEASURED_HERE = "measured here"                    # on this host, the device of a local target
    MEASURED_ON_DEVICE = "measured on the device"      # on the device over SSH (``edgekit bench --host``)
    EMULATED = "emulated"                              # an emulated device (QEMU): real runtime, not its clock
    ESTIMATED = "estimated"                            # the target's roofline estimate, labelled
    NOT_AVAILABLE = "not available"

    @property
    def measured(self) -> bool:
        """A wall-clock time on the device itself (an emulator's clock is not the device's)."""
        return self in (LatencyBasis.MEASURED_HERE, LatencyBasis.MEASURED_ON_DEVICE)


@dataclass(frozen=True)
class Basis:
    """A latency's basis and its qualifier: the device's address for ``measured on the device``, the target
    for ``estimated``. Written to the manifest as one string, ``"<kind> (<where>)"``, and read back from it."""

    kind: LatencyBasis
    where: str | None = None

    @classmethod
    def here(cls) -> Basis:
        return cls(LatencyBasis.MEASURED_HERE)

    @classmethod
    def on_device(cls, where: str) -> Basis:
        return cls(LatencyBasis.MEASURED_ON_DEVICE, where)

    @classmethod
    def estimated(cls, target: str) -> Basis:
        return cls(LatencyBasis.ESTIMATED, target)

    @classmethod
    def not_available(cls) -> Basis:
        return cls(LatencyBasis.NOT_AVAILABLE)

    @property
    def measured(self) -> bool:
        return self.kind.measured

    @property
    def is_estimate(self) -> bool:
        return self.kind is LatencyBasis.ESTIMATED

    def __str__(self) -> str:
        return f"{self.kind} ({self.where})" if self.where else str(self.kind)

    @classmethod
    def parse(cls, value: Any) -> Basis:
        """A ``Basis`` from its manifest string (or a ``Basis``); ``ValueError`` for anything else."""
        if isinstance(value, Basis):
            return value
        if not isinstance(value, str):
            raise ValueError(f"a latency basis is a string, not {type(value).__name__}")
        if value == "none":   # the default the decision rows once carried, never a measurement
            return cls.not_available()
        for kind in LatencyBasis:
            if value == kind:
                return cls(kind)
            if value.startswith(f"{kind} (") and value.endswith(")"):
                return cls(kind, value[len(kind) + 2:-1])
        raise ValueError(f"unknown latency basis {value!r} (one of: {', '.join(LatencyBasis)}, with '(where)')")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="always"))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict:
        return {"type": "string", "description": "latency basis: '<kind>' or '<kind> (<where>)'"}


class ReasonCode(StrEnum):
    """Why a decision row came out as it did. The row carries the numbers; ``edgekit.reports.reasons``
    renders the English."""

    # a per-part, per-backend precision selection (``Decision.reason``) and its chosen candidate's
    FASTEST_WITHIN_BOUND = "fastest_within_bound"      # fastest within the accuracy bound vs the final model
    NONE_WITHIN_BOUND = "none_within_bound"            # nothing within the bound: kept the most accurate
    NONE_MEASURED = "none_measured"                    # no candidate could be measured
    # a candidate that was not chosen (``Candidate.reason``)
    ESTIMATE_TIE = "estimate_tie"                      # kept: its estimate is within the estimator's error
    NOT_SCORED = "not_scored"                          # not scored (profile.score: needed)
    NOT_MEASURED = "not_measured"                      # no accuracy or no latency
    DROP_OVER_BOUND = "drop_over_bound"                # its accuracy drop exceeds the bound
    TIED_LESS_ACCURATE = "tied_less_accurate"          # within MEASURED_TIE of the chosen one, less accurate
    SLOWER = "slower"                                  # slower than the chosen one
    MIXED_NOT_FASTER = "mixed_not_faster"              # a mixed INT8/float file no faster than its backend's FP32
    # the deploy choice (``Deploy.reason``)
    FASTEST_CHOICE = "fastest_choice"                  # fastest of the per-backend choices
    FASTEST_PASSING_GATES = "fastest_passing_gates"    # fastest of those passing the CI gates
    # a build that was not made (``Skipped.reason``)
    UNKNOWN_BACKEND = "unknown_backend"                # no such backend in this edgekit version
    RUNTIME_NOT_INSTALLED = "runtime_not_installed"    # the backend's runtime is not installed
    TARGET_LACKS_PRECISION = "target_lacks_precision"  # the target does not support the precision
    BACKEND_LACKS_PRECISION = "backend_lacks_precision"  # the backend does not build the precision
    BUILD_FAILED = "build_failed"                      # it raised while compiling, loading, running or scoring
