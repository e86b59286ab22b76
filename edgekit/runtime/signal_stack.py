"""Keeps the calling thread's alternate signal stack as it was across a call into OpenVINO.

Why this exists: OpenVINO's CPU plugin (seen with 2025/2026 wheels on AMD Zen 4 and Zen 5) installs an
mmap'd alternate signal stack of its own when a plugin is created (``ov.Core().compile_model``) and,
when that plugin is destroyed, puts back the stack it found and unmaps its own. Two plugins alive at
once and destroyed first-in first-out (a dict of sessions going out of scope) leave the second one's
"found" stack in place - the first one's, already unmapped. The next signal handled on the alternate
stack (SIGCHLD once torch's DataLoader has installed its handler, or any Python handler, which CPython
installs with SA_ONSTACK) cannot be delivered: the kernel kills the process with SIGSEGV, and no
faulthandler traceback, since that handler needs the same stack (the full test suite hits it).

Putting the caller's stack back right after each plugin is created means every plugin "finds" the same
stack, so they can be destroyed in any order. Python's own stack (faulthandler's, sized from
``sysconf(_SC_SIGSTKSZ)``) is large enough for the CPU's signal frame, AMX included; with none, signals
run on the thread's stack as usual. No library offers this guard; it is a few ctypes calls. Linux only
(elsewhere a no-op); standard library only, since this package is shipped to devices.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SS_DISABLE = 2


class _StackT(ctypes.Structure):
    """``stack_t`` of glibc and musl on Linux (x86_64 and aarch64 alike)."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _sigaltstack():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sigaltstack
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
    fn.restype = ctypes.c_int
    return fn


_SIGALTSTACK = _sigaltstack()


def current_signal_stack() -> tuple[int, int, int] | None:
    """The calling thread's alternate signal stack as ``(address, flags, size)``; None where unknown."""
    if _SIGALTSTACK is None:
        return None
    now = _StackT()
    if _SIGALTSTACK(None, ctypes.byref(now)) != 0:
        return None
    return now.ss_sp or 0, now.ss_flags, now.ss_size


@contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the body, then put the thread's alternate signal stack back if the body changed it."""
    before = current_signal_stack()
    try:
        yield
    finally:
        if before is not None and current_signal_stack() != before:
            address, flags, size = before
            restore = _StackT(address or None, flags & SS_DISABLE, size)
            _SIGALTSTACK(ctypes.byref(restore), None)
