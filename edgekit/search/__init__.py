"""The latency-budget search (``edgekit compress --latency-budget-ms``): budget.py walks the compression
levels, timing.py times each candidate (here, on the device over SSH, or estimated)."""

from edgekit.search.budget import search_budget
from edgekit.search.timing import CandidateTimer, EstimateTimer, RunnerTimer

__all__ = ["CandidateTimer", "EstimateTimer", "RunnerTimer", "search_budget"]
