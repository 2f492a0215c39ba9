"""What the station holds of a PLC link: ``start()``, ``stop()``, an observable ``state``, counters."""

from __future__ import annotations

import abc
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Self

from inspector.config.plc import PlcSpec
from inspector.plc.port import StationPort
from inspector.plc.tracker import TriggerTracker
from inspector.plc.watchdog import SilenceWatchdog

_logger = logging.getLogger(__name__)


class LinkState(enum.StrEnum):
    STOPPED = "stopped"  # not started, or stopped
    CONNECTING = "connecting"  # opening the port for the first time
    CONNECTED = "connected"  # port open and the PLC talking (or the silence watchdog off)
    SILENT = "silent"  # port open, but nothing from the PLC for longer than plc_silence_s
    LOST = "lost"  # port missing or failed (USB unplugged, cable); reopening with backoff


StateCallback = Callable[[LinkState, str], None]


@dataclass
class LinkCounters:
    """Protocol-level counters for the log, the dashboard and the tests."""

    lines_in: int = 0  # ASCII lines / Modbus requests received
    errors_sent: int = 0  # ERR replies (ASCII) / rejected triggers (Modbus)
    triggers: int = 0  # accepted triggers
    results: int = 0  # verdicts sent (station verdicts + TIMEOUT + FAULT)
    timeouts: int = 0
    faults: int = 0
    late_dropped: int = 0  # station verdicts dropped because the part was already answered
    reconnects: int = 0  # times the port came back after being lost

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class PlcLink(abc.ABC):
    """Base of the ASCII and Modbus links; ``create_plc_link`` returns one of these."""

    def __init__(self, spec: PlcSpec, station: StationPort, name: str) -> None:
        self.spec = spec
        self.name = name
        self._station = station
        self._tracker = TriggerTracker(station, spec.result_timeout_s, name=name)
        self._watchdog = SilenceWatchdog(spec.plc_silence_s, self._set_silent, name=name)
        self._counters = LinkCounters()
        self._lock = threading.Lock()
        self._notify_lock = threading.RLock()
        self._callbacks: list[StateCallback] = []
        self._running = False
        self._port_up = False
        self._port_failed = False
        self._silent = False
        self._state = LinkState.STOPPED
        self._detail = ""
        self._changed = threading.Condition(self._lock)

    # --- public API ----------------------------------------------------------------------------

    @abc.abstractmethod
    def start(self) -> None:
        """Open the port (in the background: a missing port is retried, never raised) and serve the PLC."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Answer pending parts NG/FAULT, close the port and join every thread. Idempotent."""

    @property
    def counters(self) -> LinkCounters:
        """Live protocol counters (the same object every time)."""
        self._refresh_counters()
        return self._counters

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def detail(self) -> str:
        """Human-readable reason for the state (the port error while LOST)."""
        return self._detail

    def on_state(self, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback(state, detail)`` on every state change (from a link thread); returns an unsubscriber."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return unsubscribe

    def wait_for_state(self, *states: LinkState, timeout: float = 5.0) -> bool:
        """Block until the link is in one of ``states``; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._state in states, timeout=timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- for subclasses ------------------------------------------------------------------------

    def _refresh_counters(self) -> None:
        stats = self._tracker.stats
        c = self._counters
        c.triggers, c.results, c.timeouts = stats.accepted, stats.answered, stats.timeouts
        c.faults, c.late_dropped = stats.faults, stats.late_dropped

    def _set_running(self, running: bool) -> None:
        with self._lock:
            self._running = running
            if running:
                self._port_up = self._port_failed = self._silent = False
        self._recompute("")

    def _set_port(self, up: bool, detail: str = "") -> None:
        with self._lock:
            if up and self._port_failed:
                self._counters.reconnects += 1
            self._port_up = up
            self._port_failed = self._port_failed or not up
            if up:
                self._silent = False
        self._recompute(detail)

    def _set_silent(self, silent: bool) -> None:
        with self._lock:
            self._silent = silent
        self._recompute("no data from the PLC" if silent else "")

    def _recompute(self, detail: str) -> None:
        with self._notify_lock:
            with self._lock:
                if not self._running:
                    state = LinkState.STOPPED
                elif self._port_up:
                    state = LinkState.SILENT if self._silent else LinkState.CONNECTED
                else:
                    state = LinkState.LOST if self._port_failed else LinkState.CONNECTING
                if state == self._state and detail == self._detail:
                    return
                changed = state != self._state
                self._state, self._detail = state, detail
                callbacks = list(self._callbacks)
                self._changed.notify_all()
            if changed:
                log = _logger.warning if state in (LinkState.LOST, LinkState.SILENT) else _logger.info
                log("PLC link %s (%s): %s%s", self.name, self.spec.port, state.value, f" - {detail}" if detail else "")
            for callback in callbacks:
                try:
                    callback(state, detail)
                except Exception:
                    _logger.exception("PLC link state callback failed")
