"""Modbus transports: the station is a slave (pymodbus server) exposing the register map.

:class:`ModbusServer` holds the register semantics once; :class:`ModbusRtuServer` serves them on a
serial port and :class:`~inspector.plc.modbus_tcp.ModbusTcpServer` on a TCP socket.

pymodbus is pinned to the range this module is tested against (see ``TESTED_PYMODBUS``): its datastore
API changed across 3.x (``ModbusSlaveContext`` -> ``ModbusDeviceContext`` -> ``SimDevice``) and the old
device contexts shift every address by one (pymodbus issue #2559). We use the ``SimDevice`` datastore
with *protocol* addresses (``SimData(address=100)`` is what a client reads with
``read_holding_registers(100)``), keep the register values in our own :class:`RegisterMap` and copy
them into pymodbus' block inside the device ``action`` hook, which runs on every request. So there is
no address shift to compensate, and results are published atomically (103..107, then 102) from any
thread without touching pymodbus internals.

Also handled here, because pymodbus' server does not:
- requests for other unit ids (and broadcasts) are dropped, never answered (RS-485 multi-drop);
- a vanished port (USB unplug) is reopened with backoff (pymodbus' serial server stays dead), at once
  when its device path reappears;
- the kernel RS-485 settings from the config are applied to the opened port.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import serial.rs485

from inspector.config.plc import PlcSpec
from inspector.plc import registers as reg
from inspector.plc.base import PlcLink
from inspector.plc.errors import PlcError
from inspector.plc.link import ReopenWait
from inspector.plc.port import PartVerdict, StationPort, TriggerRejected

_logger = logging.getLogger(__name__)

TESTED_PYMODBUS = ((3, 16), (3, 17))  # [first tested minor, first untested minor)
_COIL_FCS = frozenset((1, 5, 15))
_HOLDING_FCS = frozenset((3, 6, 16, 22, 23))


def _import_pymodbus() -> Any:
    try:
        import pymodbus
        from pymodbus.server import ModbusSerialServer  # noqa: F401
        from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: F401
    except ImportError as exc:
        msg = (f"the Modbus transport needs pymodbus {TESTED_PYMODBUS[0][0]}.{TESTED_PYMODBUS[0][1]}.x "
               f"(SimDevice datastore): pip install 'pymodbus>=3.16,<3.17' ({exc})")
        raise PlcError(msg) from exc
    found = tuple(int(x) for x in pymodbus.__version__.split(".")[:2] if x.isdigit())
    if not TESTED_PYMODBUS[0] <= found < TESTED_PYMODBUS[1]:
        _logger.warning("pymodbus %s is outside the tested range %d.%d.x; check the register map with plc-sim",
                        pymodbus.__version__, *TESTED_PYMODBUS[0])
    return pymodbus


class ModbusServer(PlcLink):
    """The register map served over one pymodbus server; the transports (RTU, TCP) say how to open it.

    Everything a master sees - the handshake, the register semantics, the heartbeat, the fail-safe
    results - lives here once; a subclass only builds its pymodbus server (:meth:`_make_server`) and
    says whether a closed connection means the port is gone (serial) or one master left (TCP).
    """

    # Serial: the transport closing means the port vanished (reopen). TCP: one master left; the listener stays.
    _connection_loss_is_port_loss = True

    def __init__(self, spec: PlcSpec, station: StationPort, name: str = "plc-modbus") -> None:
        super().__init__(spec, station, name)
        _import_pymodbus()
        self.registers = reg.RegisterMap()
        self._io: threading.Thread | None = None
        self._heartbeat: threading.Thread | None = None
        self._halt = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_async: asyncio.Event | None = None
        self._loop_ready = threading.Event()
        if not spec.exclusive:
            _logger.info("Modbus ports are always opened exclusively (pymodbus)")

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._io is not None:
            return
        self._halt.clear()
        self._loop_ready.clear()
        self._set_running(True)
        self._update_status()
        self._tracker.start()
        self._watchdog.start()
        self._heartbeat = threading.Thread(target=self._beat, name=f"{self.name}-heartbeat", daemon=True)
        self._heartbeat.start()
        self._io = threading.Thread(target=self._run_io, name=f"{self.name}-io", daemon=True)
        self._io.start()

    def stop(self) -> None:
        if self._io is None:
            return
        self._tracker.stop("PLC link stopping")  # pending parts are published NG/FAULT
        self._halt.set()
        if self._loop_ready.wait(timeout=5) and self._loop is not None and self._stop_async is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop_async.set)
        for thread in (self._io, self._heartbeat):
            if thread is not None:
                thread.join(timeout=5)
        self._io = self._heartbeat = None
        self._watchdog.stop()
        self._set_running(False)

    # --- station side --------------------------------------------------------------------------

    def _take_trigger(self, part: int) -> None:
        """Runs on the I/O loop right after the coil write was answered: hand the part to the station."""
        part_id = str(part)
        try:
            if self._tracker.is_pending(part_id):
                # A master retrying its coil write (lost response) must not inspect the part twice.
                _logger.warning("trigger for part %s ignored: that part is still pending", part_id)
                return
            try:
                ticket = self._tracker.submit(part_id, self._publish)
            except TriggerRejected as exc:
                self._counters.errors_sent += 1
                _logger.info("trigger for part %s refused: %s %s", part_id, exc.code, exc)
                self.registers.publish(reg.rejection_registers(part, exc.code))
                return
            self._tracker.release(ticket)
        finally:
            self.registers.clear_trigger()

    def _publish(self, verdict: PartVerdict) -> None:
        self.registers.publish(reg.result_registers(verdict, int(verdict.part_id)))

    def _update_status(self) -> None:
        try:
            state = self._station.status().state
            code = reg.STATUS_CODES.get(state, reg.StatusCode.FAULT)
        except Exception:
            _logger.exception("station status failed")
            code = reg.StatusCode.FAULT
        self.registers.set_status(code)

    def _beat(self) -> None:
        # Status is refreshed from this thread, so a station whose status() hangs freezes the heartbeat:
        # that is how the PLC tells a dead station from a slow (BUSY) one.
        period = self.spec.heartbeat_ms / 1000
        due = time.monotonic() + period
        while not self._halt.wait(max(0.0, due - time.monotonic())):
            due += period
            self._update_status()
            self.registers.tick_heartbeat()

    # --- pymodbus side (I/O thread) ------------------------------------------------------------

    def _run_io(self) -> None:
        try:
            asyncio.run(self._supervise())
        except Exception:
            _logger.exception("Modbus I/O loop crashed")
            self._set_port(False, "Modbus I/O loop crashed")
        finally:
            self._loop_ready.set()

    @abc.abstractmethod
    def _make_server(self, on_connect: Callable[[bool], None]) -> Any:
        """The transport's pymodbus server over :meth:`_device`, tracing with ``_trace_packet`` / ``_trace_pdu``."""

    def _where(self) -> str:
        return self.spec.port

    def _on_listening(self, server: Any) -> None:
        """Called once the server listens (RTU applies the RS-485 settings here)."""

    async def _supervise(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_async = asyncio.Event()
        self._loop_ready.set()
        stop = self._stop_async
        delay = self.spec.reconnect_min_s
        while not stop.is_set() and not self._halt.is_set():
            lost = asyncio.Event()

            def on_connect(up: bool, lost: asyncio.Event = lost) -> None:
                if self._connection_loss_is_port_loss and not up:
                    lost.set()
                self._on_connection(up)

            server = self._make_server(on_connect)
            if await server.listen():
                self._on_listening(server)
                self._watchdog.reset()
                self._set_port(True)
                delay = self.spec.reconnect_min_s
                waiters = [asyncio.create_task(lost.wait()), asyncio.create_task(stop.wait())]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for task in waiters:
                    task.cancel()
                detail = "port closed or disconnected"
            else:
                detail = f"cannot open {self._where()}"
            await server.shutdown()
            if stop.is_set():
                break
            self._set_port(False, detail)
            if await self._wait_retry(stop, delay):
                delay = self.spec.reconnect_min_s  # the device is back: retry now, then from the start
            else:
                delay = min(delay * 2, self.spec.reconnect_max_s)

    async def _wait_retry(self, stop: asyncio.Event, delay: float) -> bool:
        """Wait ``delay`` before the next open; True when a missing device path reappeared meanwhile
        (a replugged USB adapter is reopened at once, not after the grown backoff; see link.ReopenWait)."""
        wait = ReopenWait(self.spec.port, delay)
        while (part := wait.next_slice()) is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), part)
            if stop.is_set():
                return False
        return wait.reappeared

    def _device(self) -> Any:
        from pymodbus.simulator import DataType, SimData, SimDevice

        coils = [SimData(reg.COIL_TRIGGER, values=False, datatype=DataType.BITS)]
        # pymodbus wants every table non-empty; parking the one discrete input at the top of the address
        # space keeps discrete inputs 0.. out of the map (exception 02), like the input registers.
        discrete = [SimData(0xFFF0, values=False, datatype=DataType.BITS)]
        holding = [
            SimData(reg.HR_PART_ID, values=0, datatype=DataType.REGISTERS),
            SimData(reg.HR_BLOCK_START, count=reg.HR_BLOCK_COUNT, values=0, datatype=DataType.REGISTERS,
                    readonly=True),
        ]
        inputs = [SimData(0, datatype=DataType.INVALID)]
        return SimDevice(id=self.spec.unit_id, simdata=(coils, discrete, holding, inputs), action=self._on_access)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._watchdog.touch()  # any byte from the master, for any unit, shows the PLC is alive
        return data

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        if sending:
            return pdu
        if pdu.dev_id != self.spec.unit_id:
            return None  # another slave's request or a broadcast: a slave on a shared bus stays silent
        self._counters.lines_in += 1
        return pdu

    async def _on_access(self, function_code: int, start: int, address: int, count: int,
                         registers: list[int], values: list[int] | list[bool] | None) -> None:
        """pymodbus device action: runs before every read/write of a table; mirrors our register map."""
        if function_code in _COIL_FCS:
            covers = values is not None and address <= reg.COIL_TRIGGER < address + count
            if covers and values[reg.COIL_TRIGGER - address]:
                part = self.registers.plc_set_trigger()
                # call_soon: the write is answered first (its echo shows the coil set), then the trigger is taken.
                asyncio.get_running_loop().call_soon(self._take_trigger, part)
            trigger, _, _ = self.registers.snapshot()
            index = reg.COIL_TRIGGER // 16 - start
            bit = 1 << (reg.COIL_TRIGGER % 16)
            registers[index] = (registers[index] & ~bit) | (bit if trigger else 0)
        elif function_code in _HOLDING_FCS:
            if values is not None and address <= reg.HR_PART_ID < address + count:
                self.registers.plc_wrote_part_id(int(values[reg.HR_PART_ID - address]))
            _, part, block = self.registers.snapshot()
            registers[reg.HR_PART_ID - start] = part
            first = reg.HR_BLOCK_START - start
            registers[first:first + reg.HR_BLOCK_COUNT] = block
        return None

    def _on_connection(self, up: bool) -> None:
        """A master connected (True) or left (False); TCP counts its masters here."""


class ModbusRtuServer(ModbusServer):
    """Serves the register map on ``spec.port`` as Modbus RTU slave ``spec.unit_id`` for ``station``."""

    def _make_server(self, on_connect: Callable[[bool], None]) -> Any:
        from pymodbus.server import ModbusSerialServer

        spec = self.spec
        return ModbusSerialServer(
            self._device(), port=spec.port, baudrate=spec.baudrate, bytesize=spec.bytesize,
            parity=spec.parity, stopbits=spec.stopbits, reconnect_delay=0,
            trace_packet=self._trace_packet, trace_pdu=self._trace_pdu, trace_connect=on_connect,
        )

    def _on_listening(self, server: Any) -> None:
        self._apply_rs485(server)

    def _apply_rs485(self, server: Any) -> None:
        rs = self.spec.rs485
        if rs is None:
            return
        port = getattr(getattr(server, "transport", None), "sync_serial", None)
        if port is None:
            _logger.warning("RS-485 settings not applied: this pymodbus transport does not expose its port")
            return
        try:
            port.rs485_mode = serial.rs485.RS485Settings(
                rts_level_for_tx=rs.rts_level_for_tx, rts_level_for_rx=rs.rts_level_for_rx, loopback=rs.loopback,
                delay_before_tx=rs.delay_before_tx, delay_before_rx=rs.delay_before_rx)
        except (ValueError, OSError, serial.SerialException) as exc:
            _logger.error("RS-485 settings not applied to %s: %s", self.spec.port, exc)
