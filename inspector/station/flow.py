"""How many parts are in the station: accepted, queued for inspection, published (one condition for all)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_POLL_S = 0.1


class PartFlow:
    """Counters of the parts between trigger and publication, and waits on them.

    ``inflight``: accepted and not yet numbered and handed out; ``produced``: jobs queued for
    inspection; ``published``: parts logged (or past the log) and handed to the observers.
    ``capture_exited`` is set once the capture thread has ended and queued its last job.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.capture_exited = threading.Event()
        self.inflight = 0
        self.produced = 0
        self.published = 0

    def accepted(self) -> None:
        with self._cond:
            self.inflight += 1

    def finished(self) -> None:
        """A part was numbered and handed out (or a free-run tick had no part behind it)."""
        with self._cond:
            self.inflight -= 1
            self._cond.notify_all()

    def queued(self) -> None:
        with self._cond:
            self.produced += 1

    def add_published(self, n: int) -> None:
        with self._cond:
            self.published += n
            self._cond.notify_all()

    def capture_ended(self) -> None:
        self.capture_exited.set()
        with self._cond:
            self._cond.notify_all()

    def _all_done(self) -> bool:
        return self.capture_exited.is_set() and self.inflight == 0 and self.published >= self.produced

    def done(self) -> bool:
        """True once capture has ended and every part it queued is published."""
        with self._cond:
            return self._all_done()

    def wait_done(self, timeout: float | None = None) -> bool:
        return self._wait(self._all_done, timeout)

    def wait_published(self, n: int, timeout: float) -> bool:
        return self._wait(lambda: self.published >= n, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no accepted part is in flight (changeover); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.inflight == 0, timeout)

    def _wait(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(_POLL_S if left is None else min(left, _POLL_S))
        return True
