"""A time bound for structured pruning: past it, the stage keeps the model pruned so far and says so.

torch-pruning's work grows with the model's graph (tracing, one group per prunable layer, a forward
check per step) and, on some graphs, far faster than that; a user's model must never hang the stage.
The bound is checked cooperatively between steps and groups and inside the group traversal
(``pruning.traversal``); on the main thread an interval timer also interrupts the torch-pruning calls
that run under ``interruptible``, so a single call that runs away is cut at the bound too. Callers
undo whatever the interrupted call had half done (they hold a snapshot of the model).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Iterator

BASE_SECONDS = 120.0      # tracing and a few steps of any small model on a 2-core box
SECONDS_PER_GMAC = 60.0   # a forward check and a MAC count per step, per group repaired
SECONDS_PER_MPARAM = 3.0  # deep copies of the model (undo snapshots), importance over every weight
MAX_DEFAULT_SECONDS = 600.0


def default_seconds(macs: int, params: int) -> float:
    """The default bound for a model of ``macs`` (one image) and ``params``: generous for what pruning
    costs on a small CPU box, never more than ``MAX_DEFAULT_SECONDS``."""
    return round(min(MAX_DEFAULT_SECONDS, BASE_SECONDS + SECONDS_PER_GMAC * macs / 1e9
                     + SECONDS_PER_MPARAM * params / 1e6), 1)


class TimeUp(Exception):
    """The pruning time bound was reached."""


class Deadline:
    """``seconds`` from now; ``check`` raises ``TimeUp`` once past it."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.started = time.monotonic()
        self.end = self.started + self.seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def expired(self) -> bool:
        return self.left() <= 0

    def check(self) -> None:
        if self.expired():
            raise TimeUp(f"time bound of {self.seconds:.0f} s reached")

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Raise ``TimeUp`` inside the block when the bound passes, even in the middle of a library call
        (SIGALRM on the main thread; elsewhere, or when another timer is set, the cooperative checks)."""
        self.check()
        usable = (threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
                  and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
                  and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None))
        if not usable:
            yield
            return

        def _alarm(signum, frame):
            raise TimeUp(f"time bound of {self.seconds:.0f} s reached")

        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 1e-3))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
