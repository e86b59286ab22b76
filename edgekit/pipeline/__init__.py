"""The engine behind ``edgekit.compress``: options → phases → manifest → bundle.

- ``options``: the run's typed request (``CompressOptions``) and what derives from it before any work;
- ``phases``: load, input reference, search, stages, final reference, compile/profile — each a typed record;
- ``run``: ``compress`` runs the phases, builds the manifest, decides and writes the bundle;
- ``stage_cache``: stage outputs kept by a key of everything that computes them;
- ``retime``: a bundle re-timed for its latency budget.

Users call ``edgekit.compress`` (``edgekit/api.py``); this package is its implementation.
"""

from edgekit.pipeline.options import CompressOptions, budget_gates, effective_budget
from edgekit.pipeline.phases import measure_input, resolve_inputs, run_search, run_stages
from edgekit.pipeline.retime import BUDGET_TAKES, bench_for_budget, retime_for_budget
from edgekit.pipeline.run import compress
from edgekit.pipeline.stage_cache import code_fingerprint, stage_cache_key

__all__ = ["BUDGET_TAKES", "CompressOptions", "bench_for_budget", "budget_gates", "code_fingerprint", "compress",
           "effective_budget", "measure_input", "resolve_inputs", "retime_for_budget", "run_search", "run_stages",
           "stage_cache_key"]
