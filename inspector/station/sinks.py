"""Where results go: the sink interface, a thread + bounded queue per sink, and the audit-log sink.

Every consumer of results (the PLC reply, the audit log, the GUI and terminal observers, a PLC
register map) is a :class:`Sink` driven by its own :class:`SinkRunner`: a thread with a bounded
queue and an overflow policy. The inspection thread only enqueues, so a slow or stuck sink can
never stall capture, inspection or another sink:

* ``block``: never drop (PLC replies: each accepted trigger gets exactly one answer);
* ``drop_newest``: keep the backlog, drop the new item (the audit log: a gap is recorded as an event);
* ``drop_oldest``: keep the newest items (displays).

Drops and sink errors are counted per sink (:meth:`SinkRunner.stats`) and shown by the dashboard.
"""

from __future__ import annotations

import abc
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from inspector.audit import inbox
from inspector.audit.h5log import AuditLogError, AuditWriter
from inspector.audit.plant_db import Backoff, DatabaseUnavailable, PlantDatabase
from inspector.audit.records import AuditEvent
from inspector.config.log import LogSpec
from inspector.plant.messages import ResultFacts
from inspector.plc.port import PartVerdict
from inspector.station.results import StationResult, audit_record
from inspector.station.threads import lower_this_thread

if TYPE_CHECKING:
    from inspector.plant.mqtt import MqttPublisher
    from inspector.plant.opcua import OpcUaServer

_logger = logging.getLogger(__name__)

Policy = Literal["block", "drop_newest", "drop_oldest"]
_POLL_S = 0.2
MAX_UNWRITTEN_EVENTS = 1000
# A log that cannot write is retried this often while no record comes (with log.required the station
# refuses parts until it writes again, so every second of delay is a second of line stop). A retry
# on a still-full disk costs a free-space check or one failed probe write.
LOG_RETRY_S = 0.5
INBOX_POLL_S = 0.5  # how often the log sink looks for events handed in by other processes


@runtime_checkable
class ResultSink(Protocol):
    """Anything with ``handle(result)`` can be attached to a loop (e.g. a PLC register map)."""

    def handle(self, result: StationResult) -> None: ...


class Sink(abc.ABC):
    """A consumer of items, run by a SinkRunner on its own thread."""

    name: str = "sink"

    @abc.abstractmethod
    def handle(self, item: Any) -> None: ...

    def handle_batch(self, items: Sequence[Any]) -> None:
        """Several queued items at once (override for sinks that batch, such as the log)."""
        for item in items:
            self.handle(item)

    def idle(self) -> None:  # noqa: B027 - optional hook
        """Called when the queue has been empty for a while (retries, housekeeping)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Called on the sink's thread after the queue is drained at stop."""


class CallbackSink(Sink):
    """A plain function as a sink (observers: dashboard, GUI bridge, tests)."""

    def __init__(self, fn: Callable[[Any], None], name: str = "observer") -> None:
        self.fn = fn
        self.name = name

    def handle(self, item: Any) -> None:
        self.fn(item)


class ReplySink(Sink):
    """Delivers PLC / API replies: items are (reply callback, verdict)."""

    name = "reply"

    def handle(self, item: tuple[Callable[[PartVerdict], None], PartVerdict]) -> None:
        reply, verdict = item
        reply(verdict)


@dataclass
class SinkStats:
    name: str
    policy: str
    queued: int
    capacity: int
    handled: int
    dropped: int
    errors: int
    last_error: str
    lag_ms_p50: float  # enqueue -> handled
    lag_ms_max: float
    busy_ms_mean: float  # time in handle_batch per item


@dataclass
class _Counters:
    handled: int = 0
    dropped: int = 0
    errors: int = 0
    last_error: str = ""
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    busy: deque[float] = field(default_factory=lambda: deque(maxlen=256))


class SinkRunner:
    """Runs one sink on its own thread behind a bounded queue."""

    def __init__(self, sink: Sink, queue_size: int = 32, policy: Policy = "drop_oldest", max_batch: int = 1,
                 on_error: Callable[[Sink, Exception], None] | None = None,
                 on_drop: Callable[[Any], None] | None = None, background: bool = False) -> None:
        if policy not in ("block", "drop_newest", "drop_oldest"):
            msg = f"unknown sink policy {policy!r}; use block, drop_newest or drop_oldest"
            raise ValueError(msg)
        self.sink = sink
        self.name = sink.name
        self.policy = policy
        self.capacity = queue_size
        self.max_batch = max(1, max_batch)
        self.on_error = on_error
        self.on_drop = on_drop
        # Log writing and display work yield the CPU to the inspect thread (station/threads.py); replies and
        # PLC sinks keep normal priority: their latency is the line's.
        self.background = background
        self._q: queue.Queue[tuple[float, Any]] = queue.Queue(maxsize=queue_size)
        self._c = _Counters()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
        self._in_hand = 0
        self._batching = type(sink).handle_batch is not Sink.handle_batch

    def start(self) -> SinkRunner:
        self._thread.start()
        return self

    def put(self, item: Any, *, force: bool = False, timeout: float | None = None) -> bool:
        """Enqueue by the runner's policy (``force``: block even on a dropping sink); False if dropped."""
        entry = (time.perf_counter(), item)
        if force or self.policy == "block":
            try:
                self._q.put(entry, timeout=timeout)
                return True
            except queue.Full:
                self._dropped(item)
                return False
        try:
            self._q.put_nowait(entry)
            return True
        except queue.Full:
            if self.policy == "drop_newest":
                self._dropped(item)
                return False
        try:  # drop_oldest: make room
            _, old = self._q.get_nowait()
            self._dropped(old)
        except queue.Empty:
            pass
        try:
            self._q.put_nowait(entry)
            return True
        except queue.Full:
            self._dropped(item)
            return False

    def _dropped(self, item: Any) -> None:
        with self._lock:
            self._c.dropped += 1
        if self.on_drop is not None:
            try:
                self.on_drop(item)
            except Exception:
                _logger.exception("sink %s: drop handler failed", self.name)

    def backlog(self) -> int:
        """Items queued or being handled."""
        return self._q.qsize() + self._in_hand

    def _run(self) -> None:
        if self.background:
            lower_this_thread()
        while True:
            try:
                first = self._q.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    break
                self._guard(self.sink.idle)
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            self._in_hand = len(batch)
            t0 = time.perf_counter()
            if self._batching:
                handled = len(batch) if self._guard(self.sink.handle_batch, [item for _, item in batch]) else 0
            else:  # one failing item must not cost the others their turn (each reply is owed)
                handled = sum(self._guard(self.sink.handle, item) for _, item in batch)
            t1 = time.perf_counter()
            with self._lock:
                self._c.handled += handled
                for queued_at, _ in batch:
                    self._c.lags.append((t1 - queued_at) * 1000.0)
                self._c.busy.append((t1 - t0) * 1000.0 / len(batch))
            self._in_hand = 0
        self._guard(self.sink.close)

    def _guard(self, fn: Callable[..., None], *args: Any) -> bool:
        try:
            fn(*args)
            return True
        except Exception as exc:
            with self._lock:
                self._c.errors += 1
                self._c.last_error = str(exc)
            if self._c.errors <= 3 or self._c.errors % 100 == 0:
                _logger.error("sink %s failed (%d errors so far): %s", self.name, self._c.errors, exc,
                              exc_info=not isinstance(exc, AuditLogError))
            if self.on_error is not None:
                try:
                    self.on_error(self.sink, exc)
                except Exception:
                    _logger.exception("sink %s: error handler failed", self.name)
            return False

    def stop(self, timeout: float = 10.0) -> bool:
        """Let the thread drain its queue, close the sink and end; False if it did not finish in time."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            _logger.warning("sink %s did not finish within %.1f s (%d items left)", self.name, timeout,
                            self.backlog())
            return False
        return True

    def stats(self) -> SinkStats:
        with self._lock:
            lags = np.array(self._c.lags) if self._c.lags else np.zeros(1)
            busy = float(np.mean(self._c.busy)) if self._c.busy else 0.0
            return SinkStats(self.name, self.policy, self.backlog(), self.capacity, self._c.handled, self._c.dropped,
                             self._c.errors, self._c.last_error, float(np.median(lags)), float(lags.max()), busy)


# --------------------------------------------------------------------------------------------
# The audit log sink


class AuditSink(Sink):
    """Writes results and events to the audit log, then hands the results on as published.

    ``on_written(results, logged)`` runs on this sink's thread after each write: ``logged`` is
    True when the results are published (flushed), False when the write failed.
    """

    name = "audit"

    def __init__(self, writer: AuditWriter, spec: LogSpec,
                 on_written: Callable[[list[StationResult], bool], None] | None = None,
                 retry_s: float = LOG_RETRY_S, inbox_folder: Path | None = None) -> None:
        self.writer = writer
        self.inbox_folder = inbox_folder  # events other processes hand to this station (inspector.audit.inbox)
        self._next_inbox = 0.0
        self.spec = spec
        self.on_written = on_written
        self.retry_s = retry_s
        self.failed: str | None = None
        self.published = 0
        self.write_ms: deque[float] = deque(maxlen=256)  # per record: encode + write + flush
        self._lost: dict[str, list[int]] = {}  # reason -> seqs not logged, recorded at the next write
        self._unwritten: list[AuditEvent] = []
        self._lock = threading.Lock()
        self._last_try = 0.0

    def note_dropped(self, item: Any) -> None:
        """A record did not fit in the queue (called on the producer's thread)."""
        if isinstance(item, StationResult):
            with self._lock:
                self._lost.setdefault("the log queue was full (log.queue_size)", []).append(item.seq)

    def handle(self, item: Any) -> None:
        self.handle_batch([item])

    def handle_batch(self, items: Sequence[Any]) -> None:
        results = [i for i in items if isinstance(i, StationResult)]
        events = [i for i in items if isinstance(i, AuditEvent)]
        with self._lock:
            lost, self._lost = self._lost, {}
        gaps = [AuditEvent("log_gap", "station", f"{len(seqs)} record(s) not logged: {why} - seq {_ranges(seqs)}")
                for why, seqs in lost.items()]
        taken = self._take_inbox()
        handed = [e for _, e in taken]
        events = self._unwritten + gaps + handed + events  # in time order: older unwritten changes first
        if not results and not events:
            return
        self._unwritten = []
        self._last_try = time.monotonic()
        t0 = time.perf_counter()
        try:
            records = [audit_record(r, self.spec) for r in results]
            self.writer.write(records, events)
        except Exception as exc:
            self.failed = str(exc)
            with self._lock:  # keep the gap on record for the next successful write
                for why, seqs in lost.items():
                    self._lost.setdefault(why, []).extend(seqs)
                if results:
                    self._lost.setdefault(f"write failed ({exc})"[:120], []).extend(r.seq for r in results)
            # Changes stay on record: retried with the next write (retry notes themselves are not kept).
            # (Handed-in events stay in their inbox files and are taken again.)
            handed_ids = {id(e) for e in handed}
            keep = [e for e in events if e.kind not in ("log_retry", "log_gap") and id(e) not in handed_ids]
            self._unwritten = keep[-MAX_UNWRITTEN_EVENTS:]
            self._notify(results, False)
            raise
        if results:
            per = (time.perf_counter() - t0) * 1000.0 / len(results)
            with self._lock:
                self.write_ms.extend([per] * len(results))
        if self.failed is not None:
            _logger.warning("audit log writes again (%s)", self.writer.path)
        self.failed = None
        self.published += len(results)
        if taken:
            inbox.done([path for path, _ in taken])
        self._notify(results, True)

    def write_percentiles(self) -> tuple[float, float]:
        """p50 / p95 of the per-record log cost (encode + write + flush), ms."""
        with self._lock:
            values = np.array(self.write_ms)
        if not values.size:
            return 0.0, 0.0
        return float(np.percentile(values, 50)), float(np.percentile(values, 95))

    def _notify(self, results: list[StationResult], logged: bool) -> None:
        if self.on_written is not None and results:
            self.on_written(results, logged)

    def idle(self) -> None:
        if self.failed is not None and time.monotonic() - self._last_try >= self.retry_s:
            self.handle_batch([AuditEvent("log_retry", "station", f"retrying after: {self.failed}")])
        elif self.failed is None and self._inbox_due():
            self.handle_batch([])  # writes handed-in events, if any

    def _inbox_due(self) -> bool:
        return self.inbox_folder is not None and time.monotonic() >= self._next_inbox

    def _take_inbox(self) -> list[tuple[Path, AuditEvent]]:
        if not self._inbox_due():
            return []
        self._next_inbox = time.monotonic() + INBOX_POLL_S
        assert self.inbox_folder is not None
        return inbox.pending(self.inbox_folder)

    def close(self) -> None:
        self.writer.close()


def _ranges(seqs: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    parts: list[str] = []
    run: list[int] = []
    for s in sorted(set(seqs)):
        if run and s != run[-1] + 1:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run = []
        run.append(s)
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# The plant's results database (inspector.audit.plant_db)
class DatabaseSink(Sink):
    """Observer: after each published result, and when idle, push the log's new records to PostgreSQL.

    The items only wake it up (the records come from the log's index), so a dropped item loses nothing;
    a database that is down is retried with a growing pause and never holds up anything else.
    """

    name = "results-db"

    def __init__(self, db: PlantDatabase, retry_max_s: float = 30.0) -> None:
        self.db = db
        self.backoff = Backoff(retry_max_s)
        self.down_since: float | None = None

    def handle(self, item: Any) -> None:
        self._push()

    def handle_batch(self, items: Sequence[Any]) -> None:
        self._push()

    def idle(self) -> None:
        self._push()

    def _push(self) -> None:
        if not self.backoff.due():
            return
        try:
            self.db.push()
        except DatabaseUnavailable as exc:
            self.backoff.failed()
            if self.down_since is None:
                self.down_since = time.monotonic()
                _logger.warning("%s; results stay in the audit log and are sent when it is back", exc)
            return
        if self.down_since is not None:
            _logger.info("results database is back after %.0f s; the backlog is sent",
                         time.monotonic() - self.down_since)
            self.down_since = None
        self.backoff.succeeded()

    def close(self) -> None:
        try:
            self.backoff.next_at = 0.0
            self.db.budget_s = 10.0  # a last catch-up at the stop, bounded
            self._push()
        finally:
            self.db.close()
# Plant-network sinks (docs/plant.md): fed as observers, i.e. after the audit log has the result


class MqttSink(Sink):
    """Hands each logged result and each audit event to an MQTT publisher (which only appends to its
    on-disk outbox: a dead broker never slows this thread). Stops the publisher when the run ends."""

    name = "mqtt"
    wants_events = True  # Outputs.log_event forwards audit events to sinks that ask for them

    def __init__(self, publisher: MqttPublisher) -> None:
        self.publisher = publisher

    def handle(self, item: Any) -> None:
        if isinstance(item, AuditEvent):
            self.publisher.publish_event(item.kind, item.who, item.what, item.old, item.new, item.time_ns)
            return
        self.publisher.publish_result(result_facts(item, self.publisher.station))

    def close(self) -> None:
        self.publisher.stop()


def result_facts(sr: StationResult, station: str) -> ResultFacts:
    """StationResult -> the plain facts the plant outputs publish (the plant layer cannot read a StationResult)."""
    v, r = sr.verdict, sr.result
    return ResultFacts(station=station, seq=sr.seq, part_id=sr.part_id, time_ns=sr.time_ns, line=sr.line,
                       verdict=v.verdict, score=v.score, threshold=r.threshold if r is not None else float("nan"),
                       defect=v.defect, fault=v.fault, model_version=sr.model.version,
                       config_hash=sr.model.config_hash, trigger=sr.trigger)


class OpcUaSink(Sink):
    """Shows each logged result as the OPC UA server's last result; stops the server when the run ends."""

    name = "opcua"

    def __init__(self, server: OpcUaServer) -> None:
        self.server = server

    def handle(self, item: Any) -> None:
        self.server.publish_result(result_facts(item, self.server.name))

    def close(self) -> None:
        self.server.stop()
