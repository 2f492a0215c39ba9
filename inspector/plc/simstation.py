"""A stand-in station (StationPort) for wiring tests, demos and benchmarks: no camera, no model.

One worker thread answers queued triggers after a configurable inspection time with deterministic
verdicts; faults, rejections, slow parts and even a buggy double reply can be injected. Every verdict
it gave is kept in :attr:`SimulatedStation.answered` so a test can compare it with what the PLC saw.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from inspector.plc.port import (
    PartVerdict,
    StationState,
    StationStatus,
    TriggerRejected,
    UnknownLineError,
)

_logger = logging.getLogger(__name__)

Reply = Callable[[PartVerdict], None]
DEFECTS = ("scratch", "dent")


def demo_verdict(part_id: str, seq: int) -> PartVerdict:
    """Deterministic verdict from the part id: about one part in four NG, with a defect class."""
    h = int.from_bytes(hashlib.blake2b(part_id.encode(), digest_size=4).digest(), "big")
    score = (h % 1000) / 1000
    if score < 0.75:
        return PartVerdict(part_id, "OK", score, None, 0, seq)
    index = 1 + h % len(DEFECTS)
    return PartVerdict(part_id, "NG", score, DEFECTS[index - 1], index, seq)


class SimulatedStation:
    """StationPort with a worker thread; knobs are plain attributes, safe to change while running."""

    def __init__(self, lines: tuple[str, ...] = ("demo",), latency_s: float = 0.002, queue_size: int = 8,
                 model_version: str = "sim-1", changeover_s: float = 0.05) -> None:
        self.lines = lines
        self.line = lines[0]
        self.model_version = model_version
        self.latency_s = latency_s  # inspection time per part
        self.changeover_s = changeover_s
        self.fault_all = False  # answer every part NG/FAULT (camera unplugged)
        self.fault_parts: set[str] = set()  # these part ids fail with FAULT
        self.slow_parts: dict[str, float] = {}  # part id -> inspection time override (to provoke TIMEOUT)
        self.double_reply = False  # bug injection: call reply twice
        self.not_ready = False  # reject triggers with E05
        self.paused_by = ""  # who paused it (StationPort.pause); "" = taking triggers
        self.events: list[tuple[str, str, str]] = []  # (kind, who, what) of every log_event
        self.verdict_fn: Callable[[str, int], PartVerdict] = demo_verdict
        self.answered: list[PartVerdict] = []  # every verdict given, in order
        self.received: list[str] = []  # every part id accepted, in order
        self.timings: dict[str, tuple[float, float]] = {}  # part id -> (accepted, replied) perf_counter times
        self._queue: queue.Queue[tuple[str, Reply, float] | None] = queue.Queue(maxsize=queue_size)
        self._busy = False
        self._seq = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- StationPort ---------------------------------------------------------------------------

    def submit_trigger(self, part_id: str, reply: Reply) -> None:
        accepted = time.perf_counter()
        if self.not_ready or self._thread is None or self.paused_by:
            raise TriggerRejected("E05", f"station paused by {self.paused_by}" if self.paused_by else
                                  "station not ready")
        with self._lock:
            try:
                self._queue.put_nowait((part_id, reply, accepted))
            except queue.Full:
                raise TriggerRejected("E04", "inspection queue full") from None
            self.received.append(part_id)

    def status(self) -> StationStatus:
        if self.not_ready or self.fault_all:
            return StationStatus(StationState.FAULT, self.line, self.model_version, "simulated fault")
        if self.paused_by:
            return StationStatus(StationState.BUSY, self.line, self.model_version, f"paused by {self.paused_by}",
                                 halted=True)
        busy = self._busy or not self._queue.empty()
        return StationStatus(StationState.BUSY if busy else StationState.READY, self.line, self.model_version)

    def pause(self, who: str) -> None:
        if not self.paused_by:
            self.paused_by = who
            self.log_event("station_paused", who, "triggers refused until resumed")

    def resume(self, who: str) -> None:
        if self.paused_by:
            self.paused_by = ""
            self.log_event("station_resumed", who, "taking triggers again")

    def changeover(self, line: str, who: str = "plc") -> None:
        if line not in self.lines:
            msg = f"unknown line {line!r}; this station has {list(self.lines)}"
            raise UnknownLineError(msg)
        time.sleep(self.changeover_s)
        old, self.line = self.line, line
        self.log_event("changeover", who, f"line {old} -> {line}")

    def line_names(self) -> tuple[str, ...]:
        return self.lines

    def log_event(self, kind: str, who: str, what: str, old: object = "", new: object = "") -> None:
        """No audit log here: the event goes to the Python log (and :attr:`events`)."""
        _logger.info("event %s by %s: %s", kind, who, what)
        self.events.append((kind, who, what))

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="sim-station", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- worker --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            part_id, reply, accepted = item
            self._busy = True
            pause = self.slow_parts.get(part_id, self.latency_s)
            if pause > 0:
                time.sleep(pause)
            with self._lock:
                self._seq += 1
                seq = self._seq
            if self.fault_all or part_id in self.fault_parts:
                verdict = PartVerdict.failed(part_id, "simulated camera fault", seq=seq)
            else:
                verdict = self.verdict_fn(part_id, seq)
            with self._lock:
                self.answered.append(verdict)
                self.timings[part_id] = (accepted, time.perf_counter())
            self._busy = False
            for _ in range(2 if self.double_reply else 1):
                try:
                    reply(verdict)
                except Exception:
                    _logger.exception("reply callback failed for part %s", part_id)
