"""Who gets the CPU: the inspect thread owns the compute; capture, logging and display work yield to it.

On a small CPU the backbone's torch / OpenVINO worker threads need every core for the whole pass; a
synthetic render, a PNG encode or a GUI refresh that lands meanwhile stalls the pass (its workers
wait at a barrier for the one that lost its core). Linux lets one thread of a process lower its own
priority (a per-thread nice value), so background threads call :func:`lower_this_thread` when they
start: they still get the CPU whenever the backbone is not using it, only later when it is.
``INSPECTOR_BACKGROUND_NICE`` (default 5, 0 = off) sets how far.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

_logger = logging.getLogger(__name__)
ENV = "INSPECTOR_BACKGROUND_NICE"
DEFAULT_NICE = 5


def background_nice() -> int:
    """The nice increment background threads take (``INSPECTOR_BACKGROUND_NICE``; 0 = leave them alone)."""
    raw = os.environ.get(ENV, "")
    try:
        value = int(raw) if raw.strip() else DEFAULT_NICE
    except ValueError:
        _logger.warning("%s=%r is not an integer: using %d", ENV, raw, DEFAULT_NICE)
        return DEFAULT_NICE
    return max(0, min(19, value))


def lower_this_thread(increment: int | None = None) -> bool:
    """Lower the calling thread's CPU priority by ``increment`` nice steps; True when it was lowered.

    Only where threads have their own nice value (Linux); elsewhere, or when refused, it changes nothing.
    A thread cannot raise its priority again without privileges, so call it only on dedicated threads.
    """
    step = background_nice() if increment is None else increment
    if step <= 0 or not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
    except OSError as exc:
        _logger.debug("could not lower the priority of %s: %s", threading.current_thread().name, exc)
        return False
    return True
