"""Wall-clock seconds per phase of a run (manifest ``phases``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class PhaseClock:
    """Where a run's time went besides training (references, search, compiling and profiling), so a user and
    the benchmarks can see it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 2)
