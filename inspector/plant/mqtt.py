"""MQTT result publishing (paho-mqtt): results, events and the station status, never slowing the station.

Every message goes into the on-disk outbox first (:class:`~inspector.plant.diskqueue.DiskQueue`) and
is deleted from it only when the broker acknowledged it (QoS 1 PUBACK). A sender thread hands the
outbox to paho in order, at most ``inflight`` at a time; paho retransmits unacknowledged messages
after a reconnect, and after a process restart the sender starts again from the oldest message
left on disk. So a broker that is down, slow or restarting costs the station one SQLite insert
per part, and costs the plant nothing but a delay: messages arrive late, in order, and a message
that may have been delivered twice carries the same ``seq`` (consumers drop repeats by it).

The status topic is retained and carries a last will ("offline"), so a dashboard shows a station that
vanished without a goodbye. docs/plant.md lists the topics and the payload schema.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.config.plant import MqttSpec, parse_mqtt_url
from inspector.errors import InspectorError
from inspector.plant import messages as msgs
from inspector.plant.diskqueue import DiskQueue, Dropped

_logger = logging.getLogger(__name__)
_WAKE_S = 0.5  # the sender's longest sleep: acks and new messages wake it at once


class MqttError(InspectorError):
    """The MQTT output cannot start (paho missing, unreadable password file, bad TLS files)."""


class MqttState(enum.StrEnum):
    STOPPED = "stopped"
    CONNECTING = "connecting"  # first connection not made yet
    CONNECTED = "connected"
    DOWN = "down"  # the broker went away; reconnecting (messages wait on disk)


@dataclass(frozen=True)
class MqttStats:
    state: MqttState
    detail: str
    pending: int  # messages on disk not acknowledged yet
    acked: int  # messages the broker acknowledged (this run)
    dropped: int  # messages dropped because the outbox was full (each reported in a gap event)
    reconnects: int


def _read_secret(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        msg = f"outputs.mqtt.password_file {path}: {exc.strerror or exc}; create it with the password on line 1"
        raise MqttError(msg) from exc
    if not lines or not lines[0].strip():
        msg = f"outputs.mqtt.password_file {path} is empty; put the password on its first line"
        raise MqttError(msg)
    return lines[0].strip()


class MqttPublisher:
    """Publishes results, events and status of station ``station`` to the broker of ``spec``.

    ``status_source()`` returns the status facts (state, line, counters) published retained every
    ``spec.status_period_s``; ``resolve`` turns config paths into files (relative to the config).
    All ``publish_*`` methods only append to the outbox: they never wait for the network.
    """

    def __init__(self, spec: MqttSpec, station: str, queue_file: Path,
                 status_source: Callable[[], dict[str, Any]] | None = None,
                 resolve: Callable[[Path], Path] = Path) -> None:
        self.spec = spec
        self.station = station
        self.queue_file = Path(queue_file)
        self.status_source = status_source
        self._resolve = resolve
        self.tls, self.host, self.port = parse_mqtt_url(spec.url)
        self.prefix = spec.topic_prefix
        self.queue: DiskQueue | None = None
        self._client: Any = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._acked_mids: set[int] = set()
        # paho mid -> outbox id; None: a status message; a Dropped: the gap event reporting it
        self._inflight: dict[int, int | Dropped | None] = {}
        self._connected = False
        self._ever_connected = False
        self._refused = ""  # why the broker turned us away (kept across the disconnect that follows)
        self._state = MqttState.STOPPED
        self._detail = ""
        self._acked = self._dropped = self._reconnects = 0
        self._callbacks: list[Callable[[MqttState, str], None]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MqttPublisher:
        """Open the outbox and start connecting (in the background: a dead broker is retried, never raised)."""
        if self._thread is not None:
            return self
        client = self._make_client()  # MqttError for bad credentials / TLS files: before anything runs
        self.queue = DiskQueue(self.queue_file, self.spec.queue_max)
        if len(self.queue):
            _logger.info("MQTT outbox %s holds %d message(s) from before; resending them first",
                         self.queue_file, len(self.queue))
        self._client = client
        self._halt.clear()
        self._set_state(MqttState.CONNECTING, f"{self.spec.url}")
        client.connect_async(self.host, self.port, keepalive=self.spec.keepalive_s)
        client.loop_start()
        self._thread = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain_s: float = 2.0) -> None:
        """Wait up to ``drain_s`` for pending acks, say goodbye (status offline), disconnect. Unsent
        messages stay in the outbox for the next start."""
        if self._thread is None:
            return
        deadline = time.monotonic() + drain_s
        # Also while reconnecting: a broker that is just restarting still gets the last parts of the run.
        while self.queue is not None and len(self.queue) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._halt.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._thread = None
        client = self._client
        if self._connected:
            info = client.publish(msgs.status_topic(self.prefix, self.station),
                                  msgs.encode(msgs.status_payload(self.station, msgs.OFFLINE, reason="stopped")),
                                  qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not sent in time: the will covers it
                info.wait_for_publish(timeout=1.0)
        client.disconnect()
        client.loop_stop()
        self._connected = False
        assert self.queue is not None
        self._set_state(MqttState.STOPPED, f"{len(self.queue)} message(s) left in {self.queue_file}"
                        if len(self.queue) else "")
        self.queue.close()

    def __enter__(self) -> MqttPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ feeding (never blocks on the network)
    def publish_result(self, facts: msgs.ResultFacts) -> None:
        topic = msgs.result_topic(self.prefix, facts.station, facts.line)
        self._put(topic, msgs.encode(msgs.result_payload(facts)), seq=facts.seq)

    def publish_event(self, kind: str, who: str, what: str, old: str = "", new: str = "",
                      time_ns: int | None = None) -> None:
        payload = msgs.event_payload(self.station, kind, who, what, old, new, time_ns)
        self._put(msgs.event_topic(self.prefix, self.station), msgs.encode(payload))

    def _put(self, topic: str, payload: bytes, seq: int | None = None) -> None:
        if self.queue is None:
            msg = "MQTT publisher not started"
            raise RuntimeError(msg)
        dropped = self.queue.put(topic, payload, seq=seq)
        if dropped.count:
            self._gap(dropped)
        self._wake.set()

    def _gap(self, dropped: Dropped) -> None:
        with self._lock:
            self._dropped += dropped.count
            first = self._dropped == dropped.count
        if first or self._dropped % 1000 < dropped.count:  # the log hears of it now and then, MQTT in full
            _logger.warning("MQTT outbox full (%d messages, broker unreachable): %d oldest dropped so far; "
                            "a gap event reports them when the broker returns", self.spec.queue_max, self._dropped)

    def _gap_message(self, gap: Dropped) -> bytes:
        seqs = f" (result seq {gap.first_seq}-{gap.last_seq})" if gap.first_seq is not None else ""
        what = (f"MQTT outbox full ({self.spec.queue_max} messages, broker unreachable): {gap.count} oldest "
                f"message(s) dropped{seqs}; the audit log has every result")
        return msgs.encode(msgs.event_payload(self.station, "mqtt_gap", "station", what, "", str(gap.count)))

    # ------------------------------------------------------------------ observing
    @property
    def state(self) -> MqttState:
        return self._state

    @property
    def detail(self) -> str:
        return self._detail

    def on_state(self, callback: Callable[[MqttState, str], None]) -> None:
        """Call ``callback(state, detail)`` on each change (from a network thread), e.g. the GUI status bar."""
        with self._lock:
            self._callbacks.append(callback)

    def stats(self) -> MqttStats:
        with self._lock:
            return MqttStats(self._state, self._detail, len(self.queue) if self.queue is not None else 0,
                             self._acked, self._dropped, self._reconnects)

    def wait_drained(self, timeout: float) -> bool:
        """True once every queued message is acknowledged (tests, a clean stop)."""
        deadline = time.monotonic() + timeout
        while self.queue is not None and len(self.queue):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _set_state(self, state: MqttState, detail: str) -> None:
        with self._lock:
            if state == self._state and detail == self._detail:
                return
            changed = state != self._state
            self._state, self._detail = state, detail
            callbacks = list(self._callbacks)
        if changed:
            log = _logger.warning if state == MqttState.DOWN else _logger.info
            log("MQTT %s: %s%s", self.spec.url, state.value, f" - {detail}" if detail else "")
        for callback in callbacks:
            try:
                callback(state, detail)
            except Exception:
                _logger.exception("MQTT state callback failed")

    # ------------------------------------------------------------------ paho
    def _make_client(self) -> Any:
        try:
            import paho.mqtt.client as paho
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError as exc:
            msg = f"outputs.mqtt needs paho-mqtt 2.x: pip install 'paho-mqtt>=2.1,<3' ({exc})"
            raise MqttError(msg) from exc
        spec = self.spec
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=spec.client_id or f"inspector-{self.station}",
                             protocol=paho.MQTTv311, clean_session=True)
        client.max_inflight_messages_set(min(spec.inflight, 65535))
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.will_set(msgs.status_topic(self.prefix, self.station), msgs.offline_payload(self.station),
                        qos=1, retain=True)
        if spec.username is not None:
            password = _read_secret(self._resolve(spec.password_file)) if spec.password_file is not None else None
            client.username_pw_set(spec.username, password)
        if self.tls:
            files = {name: self._resolve(p) for name, p in
                     (("ca_file", spec.ca_file), ("cert_file", spec.cert_file), ("key_file", spec.key_file))
                     if p is not None}
            for name, path in files.items():
                if not path.is_file():
                    msg = f"outputs.mqtt.{name} {path} does not exist"
                    raise MqttError(msg)
            try:
                client.tls_set(ca_certs=_opt(files.get("ca_file")), certfile=_opt(files.get("cert_file")),
                               keyfile=_opt(files.get("key_file")), cert_reqs=ssl.CERT_REQUIRED)
            except (ssl.SSLError, OSError, ValueError) as exc:
                msg = f"outputs.mqtt TLS files refused: {exc}"
                raise MqttError(msg) from exc
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._refused = f"broker refused the connection: {reason} (check username / password_file)"
            self._set_state(MqttState.DOWN if self._ever_connected else MqttState.CONNECTING, self._refused)
            return
        self._refused = ""
        with self._lock:
            if self._ever_connected:
                self._reconnects += 1
            self._ever_connected = True
            self._connected = True
        self._next_status = 0.0
        self._set_state(MqttState.CONNECTED, "")
        self._wake.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected = False
        if self._halt.is_set():
            return
        state = MqttState.DOWN if self._ever_connected else MqttState.CONNECTING
        self._set_state(state, self._refused or f"connection lost ({reason}); messages wait in {self.queue_file}")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            self._acked_mids.add(mid)
        self._wake.set()

    # ------------------------------------------------------------------ the sender thread
    def _send_loop(self) -> None:
        last_handed = 0  # outbox id of the last message handed to paho (0: start from the oldest)
        self._next_status = 0.0
        while not self._halt.is_set():
            self._wake.wait(_WAKE_S)
            self._wake.clear()
            try:
                last_handed = self._hand_over(last_handed)
                self._settle_acks()
                self._maybe_status()
            except Exception:  # a bug here must not end publishing for the rest of the run
                _logger.exception("MQTT sender failed; retrying")
                self._halt.wait(_WAKE_S)

    def _hand_over(self, last_handed: int) -> int:
        assert self.queue is not None
        room = self.spec.inflight - len(self._inflight)
        if not self._connected or room <= 0:
            return last_handed
        import paho.mqtt.client as paho

        gap = self.queue.gap()
        if gap is not None and not any(isinstance(v, Dropped) for v in self._inflight.values()):
            # Reported before the newer messages that survived it: a consumer reads the hole in order.
            info = self._client.publish(msgs.event_topic(self.prefix, self.station), self._gap_message(gap), qos=1)
            if info.rc in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                self._inflight[info.mid] = gap
        for item in self.queue.after(last_handed, room):
            info = self._client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
            # NO_CONN (the link dropped just now): paho keeps the message and sends it after the reconnect.
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                _logger.error("MQTT publish of outbox id %d refused: %s", item.id, paho.error_string(info.rc))
                break
            self._inflight[info.mid] = item.id
            last_handed = item.id
        return last_handed

    def _settle_acks(self) -> None:
        with self._lock:
            acked, self._acked_mids = self._acked_mids, set()
        done = [self._inflight.pop(mid) for mid in acked if mid in self._inflight]
        for gap in done:
            if isinstance(gap, Dropped):
                assert self.queue is not None
                self.queue.gap_reported(gap.count)
        ids = [i for i in done if isinstance(i, int)]
        if ids:
            assert self.queue is not None
            self.queue.remove(ids)
            with self._lock:
                self._acked += len(ids)
            self._wake.set()  # room for the next ones

    def _maybe_status(self) -> None:
        now = time.monotonic()
        if not self._connected or now < self._next_status or self.status_source is None:
            return
        self._next_status = now + self.spec.status_period_s
        try:
            facts = dict(self.status_source())
        except Exception as exc:
            facts = {"state": "FAULT", "detail": f"station status failed: {exc}"}
        facts["mqtt"] = {"pending": len(self.queue) if self.queue is not None else 0, "acked": self._acked,
                         "dropped": self._dropped, "reconnects": self._reconnects}
        state = str(facts.pop("state", "READY"))
        payload = msgs.encode(msgs.status_payload(self.station, state, **facts))
        info = self._client.publish(msgs.status_topic(self.prefix, self.station), payload, qos=1, retain=True)
        import paho.mqtt.client as paho

        if info.rc in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):  # NO_CONN: kept by paho, sent later
            self._inflight[info.mid] = None


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)
