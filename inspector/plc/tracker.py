"""Exactly one answer per accepted trigger, within its deadline, whatever the station does.

The station calls ``reply`` once per trigger (StationPort contract), but a station can be slow, answer
twice by mistake, or answer after the PLC gave up. The tracker is the single place that decides which
verdict reaches the PLC: the first of (station verdict, TIMEOUT at the deadline, FAULT at shutdown);
everything after that is dropped and counted. Both the ASCII and the Modbus transports use it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from inspector.plc.port import PartVerdict, StationPort, TriggerRejected

_logger = logging.getLogger(__name__)

Deliver = Callable[[PartVerdict], None]


@dataclass
class TrackerStats:
    accepted: int = 0
    rejected: int = 0
    answered: int = 0  # verdicts handed to the transport (station verdicts + TIMEOUT + FAULT)
    timeouts: int = 0
    faults: int = 0  # NG/FAULT answers (station faults and link shutdown)
    late_dropped: int = 0  # station verdicts that arrived after the part was answered


class Ticket:
    """One accepted trigger. Its verdict is held back until :meth:`TriggerTracker.release` (ACK sent)."""

    __slots__ = ("_delivered", "_key", "_released", "_result", "deadline", "deliver", "part_id", "received_at")

    def __init__(self, key: int, part_id: str, received_at: float, deadline: float, deliver: Deliver) -> None:
        self._key = key
        self.part_id = part_id
        self.received_at = received_at
        self.deadline = deadline
        self.deliver = deliver
        self._result: PartVerdict | None = None  # decided verdict (first one wins)
        self._released = False
        self._delivered = False

    @property
    def done(self) -> bool:
        return self._result is not None


class TriggerTracker:
    """Submits triggers to the station and guarantees one verdict per trigger (TIMEOUT past the deadline)."""

    def __init__(self, port: StationPort, timeout_s: float, name: str = "plc") -> None:
        self._port = port
        self._timeout_s = timeout_s
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Ticket]] = []
        self._pending: dict[int, Ticket] = {}
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.stats = TrackerStats()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=f"{self._name}-deadlines", daemon=True)
        self._thread.start()

    def stop(self, reason: str = "PLC link stopping") -> None:
        """Answer every pending part NG/FAULT (if its ACK went out) and stop the deadline thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
            doomed = [t for t in self._pending.values() if not t.done]
        for ticket in doomed:
            self._decide(ticket, PartVerdict.failed(ticket.part_id, reason, kind="FAULT"))
        if thread is not None:
            thread.join(timeout=5)

    # --- triggers ------------------------------------------------------------------------------

    def is_pending(self, part_id: str) -> bool:
        """True while a trigger with this part id waits for its verdict."""
        with self._cond:
            return any(t.part_id == part_id and not t.done for t in self._pending.values())

    @property
    def pending_count(self) -> int:
        with self._cond:
            return sum(1 for t in self._pending.values() if not t.done)

    def submit(self, part_id: str, deliver: Deliver) -> Ticket:
        """Queue the part at the station; ``deliver`` gets exactly one verdict once released.

        Raises TriggerRejected (E04 queue full / E05 not ready). A station that raises anything else is
        treated as not ready: the PLC hears E05 rather than nothing.
        """
        now = time.monotonic()
        key = next(self._seq)
        ticket = Ticket(key, part_id, now, now + self._timeout_s, deliver)
        with self._cond:
            if self._stopping:
                self.stats.rejected += 1
                raise TriggerRejected("E05", "PLC link is stopping")
            self._pending[key] = ticket
        try:
            self._port.submit_trigger(part_id, lambda verdict: self._on_station_reply(ticket, verdict))
        except Exception as exc:
            with self._cond:
                self._pending.pop(key, None)
                self.stats.rejected += 1
                answered_anyway = ticket.done
                ticket._result = ticket._result or PartVerdict.failed(part_id, "rejected")  # swallow late replies
            if answered_anyway:
                _logger.error("station answered part %s and then rejected it; the answer is dropped", part_id)
            if isinstance(exc, TriggerRejected):
                raise
            _logger.exception("station failed to take part %s", part_id)
            msg = f"station error: {type(exc).__name__}"
            raise TriggerRejected("E05", msg) from exc
        with self._cond:
            self.stats.accepted += 1
            if key in self._pending:
                heapq.heappush(self._heap, (ticket.deadline, key, ticket))
                self._cond.notify_all()
        return ticket

    def release(self, ticket: Ticket) -> None:
        """The trigger's ACK went out: its verdict may be delivered now (or as soon as it is decided)."""
        with self._cond:
            ticket._released = True
            ready = self._claim_delivery(ticket)
        if ready is not None:
            self._deliver(ticket, ready)

    # --- internals -----------------------------------------------------------------------------

    def _on_station_reply(self, ticket: Ticket, verdict: PartVerdict) -> None:
        if verdict.part_id != ticket.part_id:
            _logger.error("station answered part %s with a verdict for %s; sending FAULT", ticket.part_id,
                          verdict.part_id)
            verdict = PartVerdict.failed(ticket.part_id, f"station answered for part {verdict.part_id}")
        if not self._decide(ticket, verdict):
            with self._cond:
                self.stats.late_dropped += 1
            _logger.warning("dropped a %s verdict for part %s: the part was already answered (late by %.0f ms)",
                            verdict.verdict, ticket.part_id, 1000 * (time.monotonic() - ticket.deadline))

    def _decide(self, ticket: Ticket, verdict: PartVerdict) -> bool:
        """Make ``verdict`` the part's answer unless one was already decided; deliver if released."""
        with self._cond:
            if ticket.done:
                return False
            ticket._result = verdict
            self._pending.pop(ticket._key, None)
            if verdict.defect == "TIMEOUT" and verdict.fault is not None:
                self.stats.timeouts += 1
            elif verdict.fault is not None:
                self.stats.faults += 1
            ready = self._claim_delivery(ticket)
        if ready is not None:
            self._deliver(ticket, ready)
        return True

    def _claim_delivery(self, ticket: Ticket) -> PartVerdict | None:
        # Caller holds the lock. Exactly one caller gets the verdict back, whoever comes second.
        if ticket._released and ticket._result is not None and not ticket._delivered:
            ticket._delivered = True
            self.stats.answered += 1
            return ticket._result
        return None

    def _deliver(self, ticket: Ticket, verdict: PartVerdict) -> None:
        try:
            ticket.deliver(verdict)
        except Exception:
            _logger.exception("could not deliver the verdict for part %s", ticket.part_id)

    def _record_timeout(self, part_id: str, ms: int) -> None:
        """Put the TIMEOUT the line acted on into the station's audit log (the station's own, later verdict
        for the part is logged too: QA joins them by part id)."""
        try:
            self._port.log_event("plc_timeout", self._name,
                                 f"part {part_id}: answered NG/TIMEOUT to the PLC after {ms} ms without a verdict; the "
                                 "line acted on TIMEOUT (a later station verdict for this part is not what the PLC "
                                 "received)", "", {"part_id": part_id, "deadline_ms": ms})
        except Exception:
            _logger.exception("could not record the TIMEOUT of part %s in the audit log", part_id)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                due: list[Ticket] = []
                while self._heap and self._heap[0][0] <= now:
                    _, _, ticket = heapq.heappop(self._heap)
                    if not ticket.done:
                        due.append(ticket)
                if not due:
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for ticket in due:
                ms = round(self._timeout_s * 1000)
                if self._decide(ticket, PartVerdict.failed(ticket.part_id, f"no verdict within {ms} ms",
                                                           kind="TIMEOUT")):
                    _logger.warning("part %s: no verdict within %d ms, answered NG/TIMEOUT", ticket.part_id, ms)
                    self._record_timeout(ticket.part_id, ms)
