"""The typed vocabulary reads and writes the strings manifests have always held (old bundles still read)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from edgekit.vocab import Basis, LatencyBasis, Part, Precision


class _Row(BaseModel):
    basis: Basis
    part: Part
    precision: Precision


@pytest.mark.parametrize("text, kind, where", [
    ("measured here", LatencyBasis.MEASURED_HERE, None),
    ("measured on the device (ssh://root@127.0.0.1:2222)", LatencyBasis.MEASURED_ON_DEVICE, "ssh://root@127.0.0.1:2222"),
    ("estimated (rpi4)", LatencyBasis.ESTIMATED, "rpi4"),
    ("not available", LatencyBasis.NOT_AVAILABLE, None),
])
def test_a_basis_string_reads_into_its_kind_and_writes_back_unchanged(text, kind, where):
    row = _Row.model_validate({"basis": text, "part": "tail", "precision": "int8"})
    assert (row.basis.kind, row.basis.where) == (kind, where)
    assert row.basis.measured == (kind in (LatencyBasis.MEASURED_HERE, LatencyBasis.MEASURED_ON_DEVICE))
    assert row.model_dump(mode="json") == {"basis": text, "part": "tail", "precision": "int8"}


def test_an_unknown_basis_or_precision_is_a_validation_error():
    with pytest.raises(ValidationError):
        _Row.model_validate({"basis": "guessed", "part": "whole", "precision": "fp32"})
    with pytest.raises(ValidationError):
        _Row.model_validate({"basis": "measured here", "part": "whole", "precision": "int4"})


def test_emulated_is_never_measured():
    """An emulator runs the real runtime, but its clock is not the device's: it never decides a latency."""
    assert not Basis(LatencyBasis.EMULATED, "qemu-aarch64").measured
