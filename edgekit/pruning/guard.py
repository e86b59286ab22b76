"""A memory bound for pruning: torch-pruning's graph tracing of some models (Swin-T at 224 px:
16.5 GB peak RSS, 12 minutes, measured with /usr/bin/time -v; the MAC counter needs 0.9 GB) can
exhaust the machine, and the kernel then kills the whole process without a word. Under this guard
the address space is capped below physical memory, so the allocation fails inside Python instead
and the user gets a one-line error."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from edgekit.errors import EdgekitError

FRACTION = 0.75  # of physical memory, as address space (which also counts mapped libraries)
ENV = "EDGEKIT_MEMORY_LIMIT_GB"  # an explicit cap instead (e.g. below a sweep's own kill limit)


def _total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def is_out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, MemoryError) or ("alloc" in text and "memory" in text)


@contextlib.contextmanager
def memory_guard(what: str, hint: str = "prune at a smaller input size (--input-size), or use mode "
                 "unstructured") -> Iterator[None]:
    try:
        import resource
    except ImportError:  # not POSIX: no guard
        yield
        return
    total = _total_memory()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = int(total * FRACTION) if total else None
    if os.environ.get(ENV):
        limit = int(float(os.environ[ENV]) * 2**30)
    tighten = limit is not None and (soft == resource.RLIM_INFINITY or soft > limit) and \
        (hard == resource.RLIM_INFINITY or hard >= limit)
    if tighten:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        cap = f"{limit / 2**30:.1f} GB address space" if tighten else "the machine's memory"
        raise EdgekitError(f"{what}: out of memory (capped at {cap})", hint) from None
    finally:
        if tighten:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
