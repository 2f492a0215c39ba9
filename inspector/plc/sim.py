"""PLC simulator: drives a station over a serial port like a line PLC and checks every reply.

Used by ``inspector plc-sim`` (integrators, the demo) and by the tests. The rules it enforces are the
protocol's promises: one ACK and one result per trigger, for the right part id, within the deadline,
never an OK for a part that was not inspected, never anything for a part that was not triggered.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import serial

from inspector.config.plc import parse_tcp_port
from inspector.plc import protocol as proto
from inspector.plc import registers as reg

_logger = logging.getLogger(__name__)

_ERROR_KINDS = {reg.ResultError.FAULT: "FAULT", reg.ResultError.TIMEOUT: "TIMEOUT"}


@dataclass
class PartTrace:
    """What the PLC saw for one trigger (times from time.perf_counter)."""

    part_id: str
    sent_at: float
    ack_at: float | None = None
    result_at: float | None = None
    acks: int = 0
    results: int = 0
    verdict: str | None = None
    score: float | None = None
    defect: str | None = None
    refused: str | None = None  # "E04 text" when the station refused the trigger

    @property
    def latency_ms(self) -> float | None:
        return None if self.result_at is None else 1000 * (self.result_at - self.sent_at)

    @property
    def inspected(self) -> bool:
        """Answered with a verdict from an inspection (not NG/FAULT, not NG/TIMEOUT, a finite score)."""
        return self.verdict is not None and self.defect not in ("FAULT", "TIMEOUT") and self.score is not None \
            and math.isfinite(self.score)

    @property
    def kind(self) -> str:
        """OK / NG / FAULT / TIMEOUT / REFUSED / MISSING."""
        if self.refused:
            return "REFUSED"
        if self.verdict is None:
            return "MISSING"
        if self.defect in ("FAULT", "TIMEOUT"):
            return self.defect
        return self.verdict


@dataclass
class SimReport:
    protocol: str
    port: str
    parts: list[PartTrace]
    mismatches: list[str]
    elapsed_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def count(self, kind: str) -> int:
        return sum(1 for p in self.parts if p.kind == kind)

    @property
    def latencies_ms(self) -> list[float]:
        return [p.latency_ms for p in self.parts if p.latency_ms is not None]

    def percentile(self, q: float) -> float:
        """Trigger -> result latency percentile (``q`` in 0..100) in ms; NaN without results."""
        return percentile(self.latencies_ms, q)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in 0..100 (NaN for no values)."""
    data = sorted(values)
    if not data:
        return math.nan
    k = (len(data) - 1) * min(100.0, max(0.0, q)) / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


class ReplyChecker:
    """Pure bookkeeping of triggers and replies; flags every protocol violation as a mismatch string."""

    def __init__(self, deadline_s: float, ack_required: bool = True) -> None:
        self.deadline_s = deadline_s
        self.ack_required = ack_required
        self.parts: dict[str, PartTrace] = {}
        self.order: list[str] = []
        self.mismatches: list[str] = []
        self._awaiting_ack: list[str] = []  # triggers with neither ACK nor ERR yet, oldest first
        self._cond = threading.Condition()

    def sent(self, part_id: str, at: float) -> None:
        with self._cond:
            if part_id in self.parts:
                msg = f"simulator bug: part id {part_id} sent twice"
                raise ValueError(msg)
            self.parts[part_id] = PartTrace(part_id, at)
            self.order.append(part_id)
            self._awaiting_ack.append(part_id)

    def ack(self, part_id: str, at: float) -> None:
        with self._cond:
            trace = self.parts.get(part_id)
            if trace is None:
                self.mismatches.append(f"ACK for part {part_id} that was never triggered")
                return
            trace.acks += 1
            if trace.acks > 1:
                self.mismatches.append(f"part {part_id}: duplicate ACK")
                return
            trace.ack_at = at
            if part_id in self._awaiting_ack:
                self._awaiting_ack.remove(part_id)
            self._cond.notify_all()

    def result(self, part_id: str, verdict: str, score: float, defect: str | None, at: float) -> None:
        with self._cond:
            trace = self.parts.get(part_id)
            if trace is None:
                self.mismatches.append(f"result for part {part_id} that was never triggered")
                return
            trace.results += 1
            if trace.results > 1:
                self.mismatches.append(f"part {part_id}: second result ({verdict}) after {trace.verdict}")
                return
            if self.ack_required and trace.ack_at is None:
                self.mismatches.append(f"part {part_id}: result before ACK")
            if verdict == "OK" and (defect in ("FAULT", "TIMEOUT") or not math.isfinite(score)):
                self.mismatches.append(f"part {part_id}: OK for a part that was not inspected")
            trace.result_at, trace.verdict, trace.score, trace.defect = at, verdict, score, defect
            late_ms = 1000 * (at - trace.sent_at - self.deadline_s)
            if late_ms > 0:
                self.mismatches.append(f"part {part_id}: result {late_ms:.0f} ms past the deadline")
            self._cond.notify_all()

    def refused(self, code: str, text: str, at: float, part_id: str | None = None) -> None:
        """ERR (ASCII) or a refusal code (Modbus) for the oldest unacknowledged trigger (or ``part_id``)."""
        with self._cond:
            if part_id is None:
                if not self._awaiting_ack:
                    self.mismatches.append(f"unsolicited ERR,{code},{text}")
                    return
                part_id = self._awaiting_ack.pop(0)
            elif part_id in self._awaiting_ack:
                self._awaiting_ack.remove(part_id)
            trace = self.parts[part_id]
            trace.refused = f"{code} {text}".strip()
            self.mismatches.append(f"part {part_id}: refused {trace.refused}")
            self._cond.notify_all()

    def unexpected(self, what: str) -> None:
        with self._cond:
            self.mismatches.append(what)

    def wait_all_answered(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: all(t.results or t.refused for t in self.parts.values()), timeout)

    def finish(self) -> list[str]:
        """Final checks (missing ACK / result); returns all mismatches."""
        with self._cond:
            for part_id in self.order:
                trace = self.parts[part_id]
                if trace.refused:
                    continue
                if self.ack_required and trace.acks == 0:
                    self.mismatches.append(f"part {part_id}: no ACK")
                if trace.results == 0:
                    self.mismatches.append(f"part {part_id}: no result")
            return list(self.mismatches)

    def traces(self) -> list[PartTrace]:
        with self._cond:
            return [self.parts[p] for p in self.order]


PING_RETRY_S = 0.5  # how often an unanswered PING is repeated during the handshake


def _pace(start: float, index: int, rate_hz: float) -> None:
    due = start + index / rate_hz
    delay = due - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


class AsciiPlcSimulator:
    """Sends ``TRIG`` lines at a fixed rate (pipelined, like a conveyor) and checks ACK / RES replies."""

    def __init__(self, port: str, *, baudrate: int = 115200, parity: str = "N", checksum: bool = False,
                 deadline_ms: float = 2500, handshake_s: float = 10.0,
                 on_progress: Callable[[int], None] | None = None) -> None:
        self.port = port
        self.handshake_s = handshake_s
        self.baudrate = baudrate
        self.parity = parity
        self.checksum = checksum
        self.deadline_s = deadline_ms / 1000
        self.on_progress = on_progress
        self._splitter = proto.LineSplitter()
        self._pending_reply: list[proto.Reply] = []
        self._reply_event = threading.Condition()

    def run(self, parts: int, rate_hz: float, prefix: str = "P") -> SimReport:
        checker = ReplyChecker(self.deadline_s)
        notes: list[str] = []
        self._splitter.reset()
        self._pending_reply.clear()
        started = time.perf_counter()
        try:
            ser = serial.serial_for_url(self.port, baudrate=self.baudrate, parity=self.parity, timeout=0.05,
                                        write_timeout=1.0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            return SimReport("ascii", self.port, [], [f"cannot open {self.port}: {exc}"], 0.0)
        stop = threading.Event()
        reader = threading.Thread(target=self._read, args=(ser, checker, stop), name="plc-sim-reader", daemon=True)
        reader.start()
        try:
            if not self._handshake(ser, notes):
                checker.unexpected("station does not answer PING (check port, baud rate, protocol)")
            else:
                start = time.perf_counter()
                for i in range(parts):
                    _pace(start, i, rate_hz)
                    part_id = f"{prefix}{i + 1:06d}"
                    checker.sent(part_id, time.perf_counter())
                    ser.write(proto.encode_line(f"TRIG,{part_id}", self.checksum))
                    if self.on_progress:
                        self.on_progress(i + 1)
                checker.wait_all_answered(self.deadline_s + 0.5)
                time.sleep(0.05)  # a duplicate RES right behind the last one must still be seen
        except (serial.SerialException, OSError) as exc:
            checker.unexpected(f"port error: {exc}")
        finally:
            stop.set()
            reader.join(timeout=2)
            ser.close()
        mismatches = checker.finish()
        return SimReport("ascii", self.port, checker.traces(), mismatches, time.perf_counter() - started, notes)

    def _handshake(self, ser: serial.SerialBase, notes: list[str]) -> bool:
        """PING until PONG (a PLC polls a station that is still booting), then STATUS, before the first trigger.

        A station opening its port flushes whatever arrived before, so one PING sent too early is lost:
        PING is repeated every ``PING_RETRY_S`` for ``handshake_s``.
        """
        deadline = time.monotonic() + self.handshake_s
        while True:
            ser.write(proto.encode_line("PING", self.checksum))
            left = deadline - time.monotonic()
            if self._await_reply(proto.Pong, timeout=max(0.0, min(PING_RETRY_S, left))) is not None:
                break
            if time.monotonic() >= deadline:
                return False
        ser.write(proto.encode_line("STATUS", self.checksum))
        reply = self._await_reply(proto.StatusReply, timeout=2.0)
        if not isinstance(reply, proto.StatusReply):
            return False
        notes.append(f"station {reply.state}, line {reply.line}, model {reply.model_version}")
        with self._reply_event:  # late PONGs of repeated PINGs are not replies to anything that follows
            self._pending_reply[:] = [r for r in self._pending_reply if not isinstance(r, proto.Pong)]
        return True

    def _await_reply(self, kind: type, timeout: float) -> proto.Reply | None:
        deadline = time.monotonic() + timeout
        with self._reply_event:
            while True:
                for i, reply in enumerate(self._pending_reply):
                    if isinstance(reply, kind):
                        return self._pending_reply.pop(i)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._reply_event.wait(left)

    def _read(self, ser: serial.SerialBase, checker: ReplyChecker, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (serial.SerialException, OSError) as exc:
                checker.unexpected(f"port error while reading: {exc}")
                return
            now = time.perf_counter()
            for item in self._splitter.feed(data):
                if isinstance(item, proto.Overlong):
                    checker.unexpected(f"station sent a line longer than {proto.MAX_LINE_BYTES} bytes")
                    continue
                self._handle(item, now, checker)

    def _handle(self, line: bytes, now: float, checker: ReplyChecker) -> None:
        try:
            message, checksummed = proto.parse_reply(line)
        except proto.ProtocolError as exc:
            checker.unexpected(f"malformed reply {line[:60]!r}: {exc.text}")
            return
        if self.checksum and not checksummed:
            checker.unexpected(f"reply without checksum: {line[:60]!r}")
        if isinstance(message, proto.Ack):
            checker.ack(message.part_id, now)
        elif isinstance(message, proto.Result):
            checker.result(message.part_id, message.verdict, message.score, message.defect, now)
        elif isinstance(message, proto.ErrorReply):
            checker.refused(message.code, message.text, now)
        else:
            with self._reply_event:
                self._pending_reply.append(message)
                self._reply_event.notify_all()


class ModbusPlcSimulator:
    """Triggers through coil 0 / register 0 and polls registers 100..107, one part at a time."""

    def __init__(self, port: str, *, baudrate: int = 115200, parity: str = "N", unit_id: int = 1,
                 deadline_ms: float = 2500, request_timeout_s: float = 1.0, handshake_s: float = 0.0,
                 poll_s: float = 0.0, on_progress: Callable[[int], None] | None = None) -> None:
        self.port = port
        self.poll_s = poll_s  # pause between result polls, like a PLC's cycle (0: poll back to back)
        self.handshake_s = handshake_s  # keep polling a station that does not answer yet (still booting)
        self.baudrate = baudrate
        self.parity = parity
        self.unit_id = unit_id
        self.deadline_s = deadline_ms / 1000
        self.request_timeout_s = request_timeout_s
        self.on_progress = on_progress

    @property
    def protocol(self) -> str:
        return "modbus-tcp" if self.port.startswith("tcp://") else "modbus"

    def _client(self) -> Any:
        """A pymodbus client: TCP for ``tcp://HOST:PORT``, RTU for anything else (serial port / pyserial URL)."""
        if self.protocol == "modbus-tcp":
            from pymodbus.client import ModbusTcpClient

            host, port = parse_tcp_port(self.port)
            return ModbusTcpClient(host, port=port, timeout=self.request_timeout_s, retries=0)
        from pymodbus.client import ModbusSerialClient

        return ModbusSerialClient(self.port, baudrate=self.baudrate, parity=self.parity,
                                  timeout=self.request_timeout_s, retries=0)

    def run(self, parts: int, rate_hz: float, first_id: int = 1) -> SimReport:
        from pymodbus.exceptions import ModbusException

        checker = ReplyChecker(self.deadline_s)
        notes: list[str] = []
        started = time.perf_counter()
        client = self._client()
        if not client.connect():
            return SimReport(self.protocol, self.port, [], [f"cannot open {self.port}"], 0.0)
        try:
            first = self._first_block(client)
            notes.append(f"station status {reg.StatusCode(first.status).name if first.status < 3 else first.status}, "
                         f"heartbeat {first.heartbeat}, result seq {first.seq}")
            seq = first.seq
            start = time.perf_counter()
            for i in range(parts):
                _pace(start, i, rate_hz)
                part = (first_id + i) & 0xFFFF
                try:
                    seq = self._one(client, checker, part, seq)
                except ModbusException as exc:
                    checker.unexpected(f"part {part}: Modbus error {exc}")
                    seq = self._block(client).seq
                if self.on_progress:
                    self.on_progress(i + 1)
            time.sleep(0.05)
            last = self._block(client)
            if last.seq != seq:
                checker.unexpected(f"result sequence moved from {seq} to {last.seq} with no trigger pending")
            elapsed = time.perf_counter() - start
            beats = (last.heartbeat - first.heartbeat) & 0xFFFF
            notes.append(f"heartbeat advanced by {beats} in {elapsed:.1f} s")
            if elapsed > 1.5 and beats == 0:
                checker.unexpected("heartbeat register 101 did not change: station dead?")
        except ModbusException as exc:
            checker.unexpected(f"station does not answer (unit {self.unit_id}): {exc}")
        finally:
            client.close()
        mismatches = checker.finish()
        return SimReport(self.protocol, self.port, checker.traces(), mismatches, time.perf_counter() - started, notes)

    def _first_block(self, client: object) -> reg.ResultBlock:
        """Registers 100..107, polled for up to ``handshake_s`` while the station does not answer."""
        from pymodbus.exceptions import ModbusException

        deadline = time.perf_counter() + self.handshake_s
        while True:
            try:
                return self._block(client)
            except ModbusException:
                if time.perf_counter() >= deadline:
                    raise
                time.sleep(PING_RETRY_S)

    def _block(self, client: object) -> reg.ResultBlock:
        from pymodbus.exceptions import ModbusException

        response = client.read_holding_registers(reg.HR_BLOCK_START, count=reg.HR_BLOCK_COUNT,  # type: ignore[attr-defined]
                                                 device_id=self.unit_id)
        if response.isError():
            msg = f"reading registers 100..107 failed: {response}"
            raise ModbusException(msg)
        return reg.ResultBlock.from_registers(response.registers)

    def _one(self, client: object, checker: ReplyChecker, part: int, seq: int) -> int:
        """One handshake: write id, set coil, wait for the coil to clear (ACK) and 102 to move (result)."""
        c = client
        unit = self.unit_id
        before = self._block(c)
        if before.seq != seq:
            checker.unexpected(f"result sequence moved from {seq} to {before.seq} with no trigger pending")
        seq = before.seq
        part_id = str(part)
        from pymodbus.exceptions import ModbusException

        if c.write_register(reg.HR_PART_ID, part, device_id=unit).isError():  # type: ignore[attr-defined]
            msg = f"writing part id {part} to register 0 failed"
            raise ModbusException(msg)
        checker.sent(part_id, time.perf_counter())
        if c.write_coil(reg.COIL_TRIGGER, True, device_id=unit).isError():  # type: ignore[attr-defined]
            checker.unexpected(f"part {part_id}: setting coil 0 failed")
        deadline = time.perf_counter() + self.deadline_s + 0.5
        acked = False
        while time.perf_counter() < deadline:
            if not acked:
                coil = c.read_coils(reg.COIL_TRIGGER, count=1, device_id=unit)  # type: ignore[attr-defined]
                if not coil.isError() and not coil.bits[0]:
                    acked = True
                    checker.ack(part_id, time.perf_counter())
            block = self._block(c)
            if block.seq == seq:
                if self.poll_s:
                    time.sleep(self.poll_s)
                continue
            now = time.perf_counter()
            if (block.seq - seq) & 0xFFFF != 1:
                checker.unexpected(f"part {part_id}: result sequence jumped from {seq} to {block.seq}")
            if not acked:
                acked = True
                checker.ack(part_id, now)  # coil cleared by the time the result is up
            self._record(checker, part_id, block, now)
            return block.seq
        return seq

    @staticmethod
    def _record(checker: ReplyChecker, part_id: str, block: reg.ResultBlock, now: float) -> None:
        if str(block.part) != part_id:
            checker.unexpected(f"part {part_id}: result published for part {block.part}")
            checker.result(str(block.part), "NG", math.nan, "FAULT", now)
            return
        if block.error in (reg.ResultError.QUEUE_FULL, reg.ResultError.NOT_READY):
            checker.refused(f"E{block.error:02d}", reg.ResultError(block.error).name.lower(), now, part_id)
            return
        verdict = {reg.VerdictCode.OK: "OK", reg.VerdictCode.NG: "NG"}.get(block.verdict)
        if verdict is None:
            checker.unexpected(f"part {part_id}: verdict register 104 = {block.verdict}")
            verdict = "NG"
        if block.error and verdict == "OK":
            checker.unexpected(f"part {part_id}: OK with error code {block.error}")
        if block.error and block.error not in _ERROR_KINDS:
            checker.unexpected(f"part {part_id}: unknown error code {block.error} in register 107")
        if block.error:
            defect: str | None = _ERROR_KINDS.get(block.error, "FAULT")
        else:
            defect = str(block.defect) if block.defect else None
        checker.result(part_id, verdict, block.score_value, defect, now)
