"""The ASCII protocol engine: PLC lines in, station calls, ACK / RES / ERR lines out.

``TRIG`` is answered ``ACK`` at once (from the reader thread, before the next line is read) and then
exactly one ``RES`` from whichever thread decides the verdict (station, deadline, shutdown); the
:class:`~inspector.plc.tracker.TriggerTracker` holds a fast verdict back until its ACK is out.
``LINE`` changeovers run on their own thread so ``PING`` / ``STATUS`` keep being answered meanwhile.
"""

from __future__ import annotations

import logging
import threading

from inspector.config.plc import PlcSpec
from inspector.plc import protocol as proto
from inspector.plc.base import PlcLink
from inspector.plc.link import SerialLink
from inspector.plc.port import (
    PartVerdict,
    StationPort,
    StationState,
    StationStatus,
    TriggerRejected,
    UnknownLineError,
)

_logger = logging.getLogger(__name__)


class AsciiServer(PlcLink):
    """Serves the ASCII line protocol on ``spec.port`` for ``station``."""

    def __init__(self, spec: PlcSpec, station: StationPort, name: str = "plc-ascii") -> None:
        super().__init__(spec, station, name)
        self._mode = proto.ChecksumMode(spec.checksum)
        self._splitter = proto.LineSplitter()
        self._link = SerialLink(spec, self, self._on_port, name=name)
        self._changeover: threading.Thread | None = None
        self._started = False

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._set_running(True)
        self._tracker.start()
        self._watchdog.start()
        self._link.start()

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._tracker.stop("PLC link stopping")  # pending parts get NG/FAULT while the port is still open
        self._watchdog.stop()
        self._link.stop()
        if self._changeover is not None:
            self._changeover.join(timeout=5)
        self._set_running(False)

    # --- LinkProtocol (reader thread) ----------------------------------------------------------

    def connection_made(self) -> None:
        self._splitter.reset()
        self._watchdog.reset()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._splitter.reset()

    def data_received(self, data: bytes) -> None:
        self._watchdog.touch()
        for item in self._splitter.feed(data):
            if isinstance(item, proto.Overlong):
                self._counters.lines_in += 1
                msg = f"line longer than {proto.MAX_LINE_BYTES} bytes"
                self._send_error(proto.ErrorCode.BAD_FIELD, msg, self._mode is proto.ChecksumMode.REQUIRED)
                continue
            try:
                self.handle_line(item)
            except Exception:  # one bad line must not cost the lines behind it in the same read
                _logger.exception("failed to handle PLC line %r", item[:64])

    def handle_line(self, line: bytes) -> None:
        """Answer one PLC line (terminator stripped)."""
        self._counters.lines_in += 1
        try:
            message, checksummed = proto.parse_request(line, self._mode)
        except proto.ProtocolError as exc:
            _logger.info("PLC line %r refused: %s", line[:64], exc)
            self._send_error(exc.code, exc.text, self._with_checksum(exc.checksummed))
            return
        cs = self._with_checksum(checksummed)
        if isinstance(message, proto.Trigger):
            self._trigger(message.part_id, cs)
        elif isinstance(message, proto.Ping):
            self._send(proto.format_pong(), cs)
        elif isinstance(message, proto.StatusRequest):
            self._send(proto.format_status(self._status()), cs)
        elif isinstance(message, proto.LineRequest):
            self._start_changeover(message.line, cs)

    # --- requests ------------------------------------------------------------------------------

    def _trigger(self, part_id: str, cs: bool) -> None:
        if self._tracker.is_pending(part_id):
            self._send_error(proto.ErrorCode.BAD_FIELD, f"part {part_id} is already pending", cs)
            return
        try:
            ticket = self._tracker.submit(part_id, lambda verdict: self._send_result(verdict, cs))
        except TriggerRejected as exc:
            code = exc.code if exc.code in (proto.ErrorCode.QUEUE_FULL, proto.ErrorCode.NOT_READY) else "E05"
            self._send_error(code, str(exc), cs)
            return
        self._send(proto.format_ack(part_id), cs)
        self._tracker.release(ticket)

    def _send_result(self, verdict: PartVerdict, cs: bool) -> None:
        self._send(proto.format_result(verdict), cs)

    def _status(self) -> StationStatus:
        try:
            return self._station.status()
        except Exception as exc:
            _logger.exception("station status failed")
            return StationStatus(StationState.FAULT, "-", "-", f"status failed: {exc}")

    def _start_changeover(self, line: str, cs: bool) -> None:
        try:
            known = line in self._station.line_names()
        except Exception:
            _logger.exception("station line_names failed")
            self._send_error(proto.ErrorCode.NOT_READY, "station cannot list its lines", cs)
            return
        if not known:
            self._send_error(proto.ErrorCode.UNKNOWN_LINE, f"unknown line {line}", cs)
            return
        if self._changeover is not None and self._changeover.is_alive():
            self._send_error(proto.ErrorCode.NOT_READY, "a changeover is in progress", cs)
            return
        self._changeover = threading.Thread(target=self._run_changeover, args=(line, cs),
                                            name=f"{self.name}-changeover", daemon=True)
        self._changeover.start()

    def _run_changeover(self, line: str, cs: bool) -> None:
        try:
            self._station.changeover(line)
        except UnknownLineError as exc:
            self._send_error(proto.ErrorCode.UNKNOWN_LINE, str(exc), cs)
        except TriggerRejected as exc:
            self._send_error(proto.ErrorCode.NOT_READY, str(exc), cs)
        except Exception as exc:
            _logger.exception("changeover to %s failed", line)
            self._send_error(proto.ErrorCode.NOT_READY, f"changeover failed: {exc}", cs)
        else:
            self._send(proto.format_line_ok(line), cs)

    # --- output --------------------------------------------------------------------------------

    def _with_checksum(self, request_had_one: bool) -> bool:
        if self._mode is proto.ChecksumMode.OFF:
            return False
        return request_had_one or self._mode is proto.ChecksumMode.REQUIRED

    def _send(self, body: str, cs: bool) -> bool:
        return self._link.write(proto.encode_line(body, cs))

    def _send_error(self, code: proto.ErrorCode | str, text: str, cs: bool) -> None:
        self._counters.errors_sent += 1
        self._send(proto.format_error(code, text), cs)

    def _on_port(self, up: bool, detail: str) -> None:
        if up:
            self._watchdog.reset()
        self._set_port(up, detail)
