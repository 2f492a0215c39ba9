"""Serial transport: one port, one reader thread, reopened with backoff after it disappears.

Built on pyserial's ``serial.threaded`` pattern (a reader thread feeding a protocol object) with its
known traps designed out:

- ports are opened with ``exclusive=True`` (from the config) so a second process cannot share the line;
- ``is_open`` stays True after a hot unplug, so any ``SerialException`` / ``OSError`` means "link lost":
  the port is closed and reopened with exponential backoff until it comes back; while a device path
  (``/dev/ttyUSB0``) is missing its reappearance is watched, so a replugged adapter is reopened at once
  instead of after the backoff has grown (a 5 s unplug would otherwise cost up to 4 s more);
- reads use a short timeout (never a blocking ``readline``) so ``stop()`` always returns promptly;
- writes have a timeout, so a stuck line cannot block the station's reply thread forever;
- line framing (with its length cap) lives in the protocol object, not here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Protocol

import serial
import serial.rs485

from inspector.config.plc import PlcSpec

_logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1  # upper bound for noticing stop() / a failed write
WRITE_TIMEOUT_S = 1.0  # a write that cannot drain in 1 s means the line is dead
PATH_POLL_S = 0.05  # how often a missing device path is looked for during a backoff


class LinkProtocol(Protocol):
    """Receives the link's events, all on the reader thread."""

    def connection_made(self) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self, exc: BaseException | None) -> None: ...


class PortCallback(Protocol):
    """Told ``(True, "")`` when the port opened, ``(False, reason)`` when it failed or was lost."""

    def __call__(self, up: bool, detail: str) -> None: ...


def open_serial(spec: PlcSpec, timeout: float | None = READ_TIMEOUT_S) -> serial.SerialBase:
    """Open ``spec.port`` (device path or pyserial URL) with the spec's line settings."""
    port = serial.serial_for_url(
        spec.port,
        do_not_open=True,
        baudrate=spec.baudrate,
        bytesize=spec.bytesize,
        parity=spec.parity,
        stopbits=spec.stopbits,
        timeout=timeout,
        write_timeout=WRITE_TIMEOUT_S,
        exclusive=spec.exclusive,
    )
    if spec.rs485 is not None:
        rs = spec.rs485
        port.rs485_mode = serial.rs485.RS485Settings(
            rts_level_for_tx=rs.rts_level_for_tx,
            rts_level_for_rx=rs.rts_level_for_rx,
            loopback=rs.loopback,
            delay_before_tx=rs.delay_before_tx,
            delay_before_rx=rs.delay_before_rx,
        )
    port.open()
    return port


def device_path(port: str) -> str | None:
    """The filesystem path of a POSIX device port (``/dev/ttyUSB0``); None for URLs and ``COM3``."""
    return port if port.startswith("/") and "://" not in port else None


class ReopenWait:
    """The wait before reopening ``port``, in slices, for the threaded link and the asyncio Modbus server alike.

    The backoff ``delay`` paces opens that fail on a present device (busy, permissions): one slice of the
    whole delay. While a device path is missing (USB adapter unplugged) the wait is cut into short polls
    and ends as soon as the path reappears (``reappeared``), so a replugged adapter is reopened at once
    instead of after the grown backoff. Usage: ``while (s := wait.next_slice()) is not None: sleep(s)``.
    """

    def __init__(self, port: str, delay: float, poll_s: float = PATH_POLL_S) -> None:
        self.path = device_path(port)
        self.deadline = time.monotonic() + delay
        self.poll_s = poll_s
        self.reappeared = False
        self._watch = self.path is not None and not os.path.exists(self.path)
        self._first = True

    def next_slice(self) -> float | None:
        """Seconds to wait next; None when the wait is over (delay elapsed or the device reappeared)."""
        left = self.deadline - time.monotonic()
        if not self._watch:
            first, self._first = self._first, False
            return max(0.0, left) if first and left > 0 else None
        if self.path is not None and os.path.exists(self.path):
            self.reappeared = True
            return None
        return min(self.poll_s, left) if left > 0 else None


class SerialLink:
    """Owns one serial port; reports ``up(bool, detail)`` transitions and hands received bytes to ``protocol``."""

    def __init__(self, spec: PlcSpec, protocol: LinkProtocol, on_port: PortCallback, name: str = "plc") -> None:
        self.spec = spec
        self._protocol = protocol
        self._on_port = on_port
        self._name = name
        self._serial: serial.SerialBase | None = None
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._broken = threading.Event()  # a write failed: the reader closes and reopens the port
        self._thread: threading.Thread | None = None
        self.opened = 0  # successful opens (1 + reconnects)

    @property
    def is_up(self) -> bool:
        return self._serial is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-serial", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake_reader()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                _logger.error("serial reader thread for %s did not stop", self.spec.port)
            self._thread = None

    def write(self, data: bytes) -> bool:
        """Send ``data``; False (never an exception) when the port is down or the write failed."""
        with self._write_lock:
            port = self._serial
            if port is None:
                _logger.warning("PLC port %s is down; dropped %r", self.spec.port, data[:40])
                return False
            try:
                port.write(data)
            except (serial.SerialException, OSError) as exc:
                _logger.warning("write to PLC port %s failed (%s); reopening", self.spec.port, exc)
                self._broken.set()
                self._wake_reader()
                return False
        return True

    # --- reader thread -------------------------------------------------------------------------

    def _wake_reader(self) -> None:
        port = self._serial
        cancel = getattr(port, "cancel_read", None)
        if cancel is not None:
            try:
                cancel()
            except Exception:  # the port may be half-closed already
                _logger.debug("cancel_read failed", exc_info=True)

    def _run(self) -> None:
        delay = self.spec.reconnect_min_s
        last_error = ""
        while not self._stop.is_set():
            try:
                port = open_serial(self.spec)
            except (serial.SerialException, OSError, ValueError) as exc:
                error = str(exc) or type(exc).__name__
                if error != last_error:
                    _logger.warning("cannot open PLC port %s: %s (retrying every <= %.1f s)", self.spec.port,
                                    error, self.spec.reconnect_max_s)
                    last_error = error
                self._on_port(False, error)
                if self._wait_retry(delay):
                    delay = self.spec.reconnect_min_s  # the device is back: retry now, then from the start
                else:
                    delay = min(delay * 2, self.spec.reconnect_max_s)
                continue
            delay, last_error = self.spec.reconnect_min_s, ""
            self._serve(port)

    def _wait_retry(self, delay: float) -> bool:
        """Wait ``delay`` before the next open; True when a missing device path reappeared meanwhile."""
        wait = ReopenWait(self.spec.port, delay)
        while (part := wait.next_slice()) is not None:
            if self._stop.wait(part):
                return False
        return wait.reappeared

    def _serve(self, port: serial.SerialBase) -> None:
        self._broken.clear()
        with self._write_lock:
            self._serial = port
        self.opened += 1
        exc: BaseException | None = None
        try:
            self._protocol.connection_made()
            self._on_port(True, "")
            while not self._stop.is_set():
                if self._broken.is_set():
                    exc = serial.SerialException("write failed")
                    break
                data = port.read(1)
                if data:
                    waiting = port.in_waiting
                    if waiting:
                        data += port.read(waiting)
                    self._deliver(data)
        except (serial.SerialException, OSError) as error:
            exc = error
        finally:
            with self._write_lock:
                self._serial = None
            try:
                port.close()
            except Exception:
                _logger.debug("closing %s failed", self.spec.port, exc_info=True)
        detail = "" if exc is None else (str(exc) or type(exc).__name__)
        if exc is not None:
            _logger.warning("PLC port %s lost: %s", self.spec.port, detail)
        try:
            self._protocol.connection_lost(exc)
        except Exception:
            _logger.exception("PLC protocol connection_lost failed")
        if not self._stop.is_set():
            self._on_port(False, detail)

    def _deliver(self, data: bytes) -> None:
        # A bug in the protocol must not take the port down (pyserial's ReaderThread would close it).
        try:
            self._protocol.data_received(data)
        except Exception:
            _logger.exception("PLC protocol failed on %r", data[:64])

