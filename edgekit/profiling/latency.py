"""This machine's identity for a bundle's manifest. Measuring lives in the runtime layer
(``edgekit.runtime``: ``measure_latency``, ``latency_stats``), which the device runner also runs."""

from __future__ import annotations

from edgekit.runtime import device_identity, latency_stats, measure_latency

__all__ = ["host_identity", "latency_stats", "measure_latency"]


def host_identity() -> dict[str, str]:
    """This machine, as recorded in a bundle's manifest (same fields a device reports)."""
    return device_identity()
