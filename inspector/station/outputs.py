"""Where each decided part goes: the reply, the extra sinks, the audit log, and after the log the observers.

The inspection thread only enqueues (:meth:`Outputs.publish`); each consumer runs on its own
:class:`~inspector.station.sinks.SinkRunner`. Observers (dashboard, GUI) are fed by the audit sink
after each flush, so what they show is already in the log; without a log they are fed at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.audit.h5log import AuditWriter
from inspector.audit.plant_db import PlantDatabase
from inspector.audit.records import AuditEvent
from inspector.config.database import DatabaseSpec
from inspector.config.log import LogSpec
from inspector.config.plant import MqttSpec, OpcUaSpec
from inspector.plc.port import PartVerdict
from inspector.station.flow import PartFlow
from inspector.station.results import StationResult
from inspector.station.sinks import AuditSink, CallbackSink, Policy, ReplySink, Sink, SinkRunner, SinkStats
from inspector.station.stats import Tally

if TYPE_CHECKING:
    from inspector.plant.mqtt import MqttPublisher
    from inspector.plant.opcua import OpcUaServer
    from inspector.station.loop import StationLoop

_logger = logging.getLogger(__name__)


class Outputs:
    """The reply runner, the sinks, the audit log sink and the observers of one station run."""

    def __init__(self, tally: Tally, flow: PartFlow, reply_room: int) -> None:
        self._tally = tally
        self._flow = flow
        self._reply = SinkRunner(ReplySink(), queue_size=reply_room, policy="block")
        self._sinks: list[SinkRunner] = []
        self._observers: list[SinkRunner] = []
        self.audit: AuditSink | None = None
        self._audit_runner: SinkRunner | None = None

    # ------------------------------------------------------------------ wiring
    def runner(self, sink: Sink | Callable[[StationResult], None], name: str | None, queue_size: int,
               policy: Policy, *, observer: bool) -> SinkRunner:
        """A runner for ``sink`` (a plain function is wrapped), attached as a sink or an observer (not started)."""
        if not isinstance(sink, Sink):
            sink = CallbackSink(sink, name or getattr(sink, "__name__", "observer"))
        elif name:
            sink.name = name
        runner = SinkRunner(sink, queue_size, policy, on_drop=lambda _item: self._tally.drop(f"sink {sink.name}"),
                            background=observer)
        (self._observers if observer else self._sinks).append(runner)
        return runner

    def open_log(self, writer: AuditWriter, spec: LogSpec, inbox_folder: Path) -> None:
        """Write every result and event to ``writer`` from now on (started at once: events come before parts)."""
        self.audit = AuditSink(writer, spec, on_written=self._on_written, inbox_folder=inbox_folder)
        self._audit_runner = SinkRunner(self.audit, spec.queue_size, "drop_newest", max_batch=64,
                                        on_drop=self._on_audit_drop, background=True).start()

    def start(self) -> None:
        self._reply.start()
        for runner in self._sinks + self._observers:
            runner.start()

    # ------------------------------------------------------------------ feeding
    def answer(self, reply: Callable[[PartVerdict], None], verdict: PartVerdict) -> None:
        """Queue the trigger's answer (the reply runner never drops: each accepted trigger gets one)."""
        self._reply.put((reply, verdict))

    def hand_out(self, sr: StationResult) -> None:
        """Count the part, then hand it to the sinks and to the log (or straight to the observers)."""
        self._tally.count(sr.verdict.verdict, sr.fault is not None, sr.verdict.defect, sr.seq, sr.timings_ms)
        for runner in self._sinks:
            runner.put(sr)
        if self._audit_runner is not None:
            self._audit_runner.put(sr)
        else:
            self._to_observers([sr])

    def log_event(self, kind: str, who: str, what: str, old: str, new: str) -> None:
        if self._audit_runner is not None:
            event = AuditEvent(kind, who, what, old, new, time.time_ns())
            self._audit_runner.put(event, force=True, timeout=0.5)
            for runner in self._observers:  # plant outputs publish events too (MqttSink.wants_events)
                if getattr(runner.sink, "wants_events", False):
                    runner.put(event)

    @property
    def logging(self) -> bool:
        return self._audit_runner is not None

    def _on_written(self, results: list[StationResult], logged: bool) -> None:
        if not logged:
            self._tally.drop("records not logged: log write failed", len(results))
        self._to_observers(results)

    def _on_audit_drop(self, item: Any) -> None:
        if isinstance(item, StationResult):
            assert self.audit is not None
            self.audit.note_dropped(item)
            self._tally.drop("records not logged: log queue full")
            self._to_observers([item])
        else:
            _logger.error("audit event lost (log queue full): %s", item)

    def _to_observers(self, results: list[StationResult]) -> None:
        for runner in self._observers:
            for sr in results:
                runner.put(sr)
        self._flow.add_published(len(results))

    # ------------------------------------------------------------------ stopping (in this order)
    def stop_replies_and_sinks(self, deadline: float) -> None:
        self._reply.stop(_left(deadline))
        for runner in self._sinks:
            runner.stop(_left(deadline))

    def close_log(self, deadline: float) -> None:
        """Drain the log queue and close the file (the observers get the last parts meanwhile)."""
        if self._audit_runner is not None:
            self._audit_runner.stop(_left(deadline))

    def stop_observers(self, deadline: float) -> None:
        for runner in self._observers:
            runner.stop(_left(deadline))

    def sink_stats(self) -> list[SinkStats]:
        stats = [r.stats() for r in [self._reply, *self._sinks, *self._observers]]
        if self._audit_runner is not None:
            stats.insert(1, self._audit_runner.stats())
        return stats


def attach_database(loop: StationLoop, spec: DatabaseSpec | None, url: str | None = None) -> PlantDatabase:
    """Send ``loop``'s logged inspections and events to the results database (``url`` overrides ``spec.url``).

    The station's audit log is the backlog (inspector.audit.plant_db), so it must be on."""
    from inspector.station.sinks import DatabaseSink

    if url is not None:
        spec = DatabaseSpec.model_validate({**(spec.model_dump() if spec is not None else {}), "url": url})
    if spec is None:
        msg = "attach_database needs outputs.database in the config or a database url"
        raise ValueError(msg)
    if not loop.log_enabled:
        msg = ("the results database is fed from the audit log (its backlog when the database is down): "
               "turn the log on (log.enabled, no --no-log)")
        raise ValueError(msg)
    password = None
    if spec.password_file is not None:
        path = loop.station.resolve(spec.password_file)
        try:
            password = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"outputs.database.password_file {path}: {exc.strerror or exc}"
            raise ValueError(msg) from None
    db = PlantDatabase(spec.url, loop.station.station, loop.log_folder, password=password, batch=spec.batch,
                       connect_timeout_s=spec.connect_timeout_s)
    loop.add_observer(DatabaseSink(db, spec.retry_max_s), name="results-db", queue_size=4096, policy="drop_oldest")
    return db
def attach_mqtt(loop: StationLoop, spec: MqttSpec | None, url: str | None = None) -> MqttPublisher:
    """Publish ``loop``'s logged results, events and status to MQTT (``url`` overrides ``spec.url``; ``spec``
    None with a url: the defaults). Started here (a bad password file raises now); stopped with the loop."""
    from inspector.plant.mqtt import MqttPublisher
    from inspector.station.sinks import MqttSink

    station = loop.station
    if url is not None:
        spec = MqttSpec.model_validate({**(spec.model_dump() if spec is not None else {}), "url": url})
    if spec is None:
        msg = "attach_mqtt needs outputs.mqtt in the config or a broker url"
        raise ValueError(msg)
    queue_file = station.resolve(spec.queue_file) if spec.queue_file else loop.log_folder / ".mqtt-queue.sqlite"

    def status() -> dict[str, Any]:
        s = loop.stats()
        return {"state": s.state.value, "detail": s.detail, "line": s.line, "model_version": s.model_version,
                "parts": s.parts, "ok": s.ok, "ng": s.ng, "faults": s.faults, "last_seq": s.last_seq,
                "rate_fps": round(s.rate_fps, 3), "uptime_s": round(s.uptime_s, 1)}

    publisher = MqttPublisher(spec, station.station, queue_file, status_source=status, resolve=station.resolve)
    publisher.start()
    loop.add_observer(MqttSink(publisher), name="mqtt", queue_size=4096, policy="drop_oldest")
    return publisher


def attach_opcua(loop: StationLoop, spec: OpcUaSpec) -> OpcUaServer:
    """Serve ``loop`` over OPC UA (started here: OpcUaError when the endpoint or the users file is bad)."""
    from inspector.plant.opcua import OpcUaServer
    from inspector.station.sinks import OpcUaSink

    def counters() -> dict[str, Any]:
        s = loop.stats()
        return {"parts": s.parts, "ok": s.ok, "ng": s.ng, "faults": s.faults}

    server = OpcUaServer(spec, loop, loop.station.station, status_source=counters, resolve=loop.station.resolve)
    server.start()
    loop.add_observer(OpcUaSink(server), name="opcua", queue_size=64, policy="drop_oldest")  # only the last counts
    return server


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())
