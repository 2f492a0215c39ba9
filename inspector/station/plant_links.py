"""The plant-network links of a station the GUI runs (MQTT, OPC UA, results database) and how each is doing.

``inspector run`` attaches the outputs of the station YAML to its one loop (:mod:`inspector.station.outputs`).
The GUI's :class:`~inspector.station.handle.StationHandle` builds a new loop for every START, so
:class:`PlantLinks` attaches MQTT and the results database to each run (they end with it: MQTT says
"offline", its outbox stays on disk for the next run; the database is fed from the audit log) and keeps
**one** OPC UA server over the handle for the whole session, so a SCADA client reads the station and calls
Stop / Start whatever the panel did. :meth:`PlantLinks.states` says how each configured link is doing in
plain words (:class:`LinkState`, Qt-free) for the GUI's status bar. A link that cannot start is reported
there and in the log; the line runs without it rather than not at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from inspector.config import StationConfig
from inspector.config.plant import OutputsSpec
from inspector.plc.port import StationPort
from inspector.station.results import StationResult

if TYPE_CHECKING:
    from inspector.audit.plant_db import PlantDatabase
    from inspector.plant.mqtt import MqttPublisher
    from inspector.plant.opcua import OpcUaServer
    from inspector.station.loop import StationLoop

_logger = logging.getLogger(__name__)

Level = Literal["ok", "warn", "fault", "off"]
# A working link always has a few messages in flight (a part every 100 ms, acked in a millisecond): its label
# names a count only past this, a real backlog (catching up after an outage). Down or connecting: always.
BACKLOG_SHOWN = 10


@dataclass(frozen=True)
class LinkState:
    """One plant link in a status bar's words."""

    name: str  # "MQTT" | "OPC UA" | "Database"
    level: Level  # ok (green), warn (amber: connecting), fault (red: down, failed), off (grey: stopped)
    text: str  # one or two words: "connected", "down · 12 waiting", "listening", "stopped"
    detail: str  # the whole story for a tooltip: where, why, what happens to the data
    waiting: int = 0  # messages / records not delivered yet


def _waiting(n: int, working: bool = False) -> str:
    return f" · {n} waiting" if n > (BACKLOG_SHOWN if working else 0) else ""


def mqtt_state(publisher: MqttPublisher | None, url: str, error: str = "") -> LinkState:
    """The MQTT link: connected / connecting / down with its outbox depth / stopped / failed to start."""
    from inspector.plant.mqtt import MqttState

    if error:
        return LinkState("MQTT", "fault", "failed", f"MQTT {url} did not start: {error}")
    if publisher is None:
        return LinkState("MQTT", "off", "stopped", f"MQTT {url}: connects when the station starts")
    s = publisher.stats()
    where = f"; {s.pending} message(s) wait in {publisher.queue_file}" if s.pending else ""
    if s.state is MqttState.CONNECTED:
        return LinkState("MQTT", "ok", "connected" + _waiting(s.pending, working=True),
                         f"MQTT {url}: {s.acked} acknowledged{where}", s.pending)
    if s.state is MqttState.CONNECTING:
        return LinkState("MQTT", "warn", "connecting" + _waiting(s.pending), f"MQTT {url}: {s.detail}{where}",
                         s.pending)
    if s.state is MqttState.DOWN:
        return LinkState("MQTT", "fault", "down" + _waiting(s.pending),
                         f"MQTT {url}: {s.detail}{where}; they are sent in order when the broker is back", s.pending)
    return LinkState("MQTT", "off", "stopped" + _waiting(s.pending), f"MQTT {url}: station stopped" +
                     (f"; {s.detail}, sent at the next start" if s.detail else ""), s.pending)


def opcua_state(server: OpcUaServer | None, endpoint: str, error: str = "") -> LinkState:
    """The OPC UA server: listening / stopped / failed to start."""
    if error:
        return LinkState("OPC UA", "fault", "failed", f"OPC UA server on {endpoint} did not start: {error}")
    if server is None or not server.running:
        return LinkState("OPC UA", "off", "stopped", f"OPC UA server on {endpoint}: starts with the station")
    return LinkState("OPC UA", "ok", "listening", f"OPC UA server on {endpoint} (security "
                     f"{', '.join(server.spec.security)})")


def database_state(db: PlantDatabase | None, url: str, last_seq: int, error: str = "") -> LinkState:
    """The results database: connected / connecting / down with the results not sent yet / stopped."""
    if error:
        return LinkState("Database", "fault", "failed", f"results database {url} not attached: {error}")
    if db is None:
        return LinkState("Database", "off", "stopped", f"results database {url}: fed while the station runs")
    behind = max(0, last_seq - db.sent_seq) if db.sent_seq is not None else 0
    if db.last_error:
        return LinkState("Database", "fault", "down" + _waiting(behind),
                         f"{db.last_error}; the results wait in the audit log and are sent when it is back", behind)
    if db.sent_seq is None:
        return LinkState("Database", "warn", "connecting", f"results database {url}: no push yet")
    return LinkState("Database", "ok", "connected" + _waiting(behind, working=True),
                     f"results database {url}: {db.pushed} record(s) sent by this run", behind)


class PlantLinks:
    """The configured plant outputs of a GUI station (see the module doc).

    ``port`` is what the OPC UA server serves (the handle: Stop / Start / SelectRecipe reach whichever run
    is current); ``counts()`` gives the shift counters (parts, ok, ng, faults) it shows;
    ``add_observer`` attaches its result feed to this and every later run.
    """

    def __init__(self, config: StationConfig, port: StationPort, counts: Callable[[], dict[str, int]],
                 add_observer: Callable[..., None]) -> None:
        self.config = config
        self.outputs: OutputsSpec = config.outputs
        self._port = port
        self._counts = counts
        self._add_observer = add_observer
        self._lock = threading.Lock()
        self._loop: StationLoop | None = None
        self.mqtt: MqttPublisher | None = None
        self.database: PlantDatabase | None = None
        self.opcua: OpcUaServer | None = None
        self._errors: dict[str, str] = {}

    # ------------------------------------------------------------------ per run
    def attach(self, loop: StationLoop) -> None:
        """Attach the per-run links to ``loop`` (before it starts: MQTT sees its start event); the first call
        also starts the OPC UA server. Failures are kept for :meth:`states`, never raised."""
        from inspector.station.outputs import attach_database, attach_mqtt

        with self._lock:
            self._loop = loop
            o = self.outputs
            if o.mqtt is not None:
                self.mqtt = self._try("mqtt", lambda: attach_mqtt(loop, o.mqtt))
            if o.database is not None:
                self.database = self._try("database", lambda: attach_database(loop, o.database))
            if o.opcua is not None and self.opcua is None:
                self.opcua = self._try("opcua", self._start_opcua)

    def detach(self) -> None:
        """The run ended (or failed to start): its links are closed by the loop's stop; make sure of it.
        The stopped MQTT publisher stays for :meth:`states` (its outbox depth)."""
        with self._lock:
            mqtt, db, self.database, self._loop = self.mqtt, self.database, None, None
        for what, close in (("MQTT", mqtt.stop if mqtt else None), ("database", db.close if db else None)):
            if close is not None:
                try:
                    close()  # idempotent: the loop's sinks stopped them already after a clean run
                except Exception:
                    _logger.exception("closing the %s link failed", what)

    def stop(self) -> None:
        """Application exit: the OPC UA server goes too."""
        self.detach()
        server, self.opcua = self.opcua, None
        if server is not None:
            server.stop()

    def _try(self, key: str, start: Callable[[], Any]) -> Any:
        try:
            link = start()
        except Exception as exc:  # the line runs without this link rather than not at all
            self._errors[key] = f"{type(exc).__name__}: {exc}"
            _logger.exception("plant link %s could not start", key)
            return None
        self._errors.pop(key, None)
        return link

    def _start_opcua(self) -> OpcUaServer:
        from inspector.plant.opcua import OpcUaServer
        from inspector.station.sinks import result_facts

        assert self.outputs.opcua is not None
        name = self.config.station
        server = OpcUaServer(self.outputs.opcua, self._port, name, status_source=self._counts,
                             resolve=self.config.resolve).start()

        def show(sr: StationResult) -> None:
            server.publish_result(result_facts(sr, name))

        self._add_observer(show, name="opcua", queue_size=64)  # only the last result counts
        return server

    # ------------------------------------------------------------------ states
    def states(self) -> list[LinkState]:
        """One :class:`LinkState` per configured link, in a fixed order (MQTT, OPC UA, Database)."""
        o, err = self.outputs, self._errors
        loop = self._loop
        out: list[LinkState] = []
        if o.mqtt is not None:
            out.append(mqtt_state(self.mqtt, o.mqtt.url, err.get("mqtt", "")))
        if o.opcua is not None:
            out.append(opcua_state(self.opcua, o.opcua.endpoint, err.get("opcua", "")))
        if o.database is not None:
            from inspector.audit.plant_db import redact

            last_seq = loop.tally.last_seq if loop is not None else 0
            out.append(database_state(self.database, redact(o.database.url), last_seq, err.get("database", "")))
        return out
