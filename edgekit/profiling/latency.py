"""Latency through a runtime session: warm-up, then timed runs until N runs or a time budget.

The implementation lives in ``runner.py`` (the self-contained file ``edgekit bench`` also ships to
devices), so host and device numbers come from the same code.
"""

from __future__ import annotations

from edgekit.profiling.runner import device_identity, latency_stats, measure_latency

__all__ = ["host_identity", "latency_stats", "measure_latency"]


def host_identity() -> dict[str, str]:
    """This machine, as recorded in a bundle's manifest (same fields a device reports)."""
    return device_identity()
