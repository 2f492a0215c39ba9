"""What starts an inspection: per-part triggers (PLC link, software / API) and the free-run clock.

Per-part triggers wait in a bounded :class:`TriggerQueue`; a full queue refuses the trigger with
E04 at once, so the PLC always hears back and the station never buffers without bound.
"""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal

from inspector.plc.port import PartVerdict, TriggerRejected

TriggerKind = Literal["free_run", "plc", "software"]
Reply = Callable[[PartVerdict], None]

PART_ID_MAX = 64
_PART_ID_RE = re.compile(r"^[\x21-\x7e]{1,64}$")


def check_part_id(part_id: str) -> str:
    """A part id is 1-64 printable ASCII characters without spaces (it goes to the PLC and the log)."""
    if not isinstance(part_id, str) or not _PART_ID_RE.match(part_id):
        msg = f"part id {part_id!r} must be 1-{PART_ID_MAX} printable ASCII characters without spaces"
        raise ValueError(msg)
    return part_id


@dataclass
class Trigger:
    """One requested inspection."""

    part_id: str | None  # None: named after the frame (free-run)
    kind: TriggerKind
    reply: Reply | None = None
    accepted: float = field(default_factory=time.perf_counter)  # perf_counter seconds
    armed: bool = False  # a software-triggered camera already exposed for it when it was accepted


class TriggerQueue:
    """Bounded FIFO of per-part triggers; ``submit`` never blocks."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._q: queue.Queue[Trigger] = queue.Queue(maxsize=size)
        # Told of each trigger as it is accepted, before it waits (the camera's software trigger fires here).
        self.on_accept: Callable[[float], bool] | None = None

    def submit(self, trigger: Trigger) -> None:
        """Queue ``trigger`` (callers serialise submits: the loop holds its phase lock)."""
        try:
            if self.on_accept is not None and not self._q.full():
                trigger.armed = self.on_accept(trigger.accepted)
            self._q.put_nowait(trigger)
        except queue.Full:
            msg = (f"trigger queue full ({self.size} parts waiting): the line triggers faster than the station "
                   "inspects; slow the line or raise trigger.queue_size")
            raise TriggerRejected("E04", msg) from None

    def get(self, timeout: float) -> Trigger | None:
        try:
            return self._q.get(timeout=max(timeout, 0.0)) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return None

    def drain(self) -> list[Trigger]:
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out

    def __len__(self) -> int:
        return self._q.qsize()


class FreeRunClock:
    """Ticks at ``rate_hz`` on the monotonic clock, without drift; late ticks are skipped and counted."""

    def __init__(self, rate_hz: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = 1.0 / rate_hz
        self._clock = clock
        self._next = clock()
        self.late = 0  # ticks skipped because the loop was busy past the following tick

    def wait_time(self) -> float:
        """Seconds until the next tick (<= 0: due now)."""
        return self._next - self._clock()

    def take(self) -> bool:
        """Consume the tick if due; True when one was."""
        now = self._clock()
        if now < self._next:
            return False
        behind = int((now - self._next) / self.period)
        self.late += behind
        self._next += (behind + 1) * self.period
        return True

    def reset(self) -> None:
        """Restart the schedule from now (after a pause, so the pause is not counted as late)."""
        self._next = self._clock()


class FutureReply:
    """A reply callback that completes a Future: ``loop.trigger()`` hands it back to the caller."""

    def __init__(self) -> None:
        self.future: Future[PartVerdict] = Future()

    def __call__(self, verdict: PartVerdict) -> None:
        if not self.future.done():
            self.future.set_result(verdict)
