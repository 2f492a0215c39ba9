"""Modbus TCP transport: the same register map and handshake as RTU, served on a TCP socket.

What differs from the serial line, and why:

- several masters may connect at once (a PLC, a SCADA poller, an engineer's laptop); they share the
  one register map, exactly as two masters on one RS-485 bus would;
- a master that disconnects (cable pulled, PLC restart, mid-read) is *not* a station fault and does not
  close the listener: only a listener that cannot bind (address in use, no such interface) makes the
  link LOST, and it is retried with the same backoff as a vanished serial port;
- a request for another unit id is answered with Modbus exception 0x0B (gateway target did not
  respond), as a TCP gateway would, instead of the silence of a shared serial bus.

Malformed frames (bad MBAP header, wrong length, unknown function) are pymodbus' to reject; the station
only sees well-formed requests through :meth:`ModbusServer._on_access`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from inspector.config.plc import PlcSpec
from inspector.plc.modbus import ModbusServer
from inspector.plc.port import StationPort

_logger = logging.getLogger(__name__)


class _OtherUnit:
    """Stands in for a request to another unit id: its datastore step answers exception 0x0B.

    pymodbus' own lookup would fall back to device 0 (absent here) and answer 0x04 "device failure"
    with a logged traceback; a TCP gateway's answer for a unit it does not reach is 0x0B.
    """

    def __init__(self, pdu: Any) -> None:
        self.function_code = pdu.function_code
        self.transaction_id = pdu.transaction_id
        self.dev_id = pdu.dev_id

    async def datastore_update(self, context: Any, dev_id: int) -> Any:
        from pymodbus.constants import ExcCodes
        from pymodbus.pdu import ExceptionResponse

        return ExceptionResponse(self.function_code, ExcCodes.GATEWAY_NO_RESPONSE)


class ModbusTcpServer(ModbusServer):
    """Serves the register map on ``tcp://HOST:PORT`` (``spec.port``) as unit ``spec.unit_id`` for ``station``."""

    _connection_loss_is_port_loss = False

    def __init__(self, spec: PlcSpec, station: StationPort, name: str = "plc-modbus-tcp") -> None:
        self.address = spec.tcp_address  # ValueError naming the expected form, before anything starts
        super().__init__(spec, station, name)
        self._masters_lock = threading.Lock()
        self._masters = 0
        self.connections = 0  # masters that ever connected

    @property
    def masters(self) -> int:
        """Masters connected now."""
        with self._masters_lock:
            return self._masters

    def _where(self) -> str:
        host, port = self.address
        return f"tcp://{host}:{port} (address in use or not on this machine?)"

    def _make_server(self, on_connect: Callable[[bool], None]) -> Any:
        from pymodbus.server import ModbusTcpServer as PymodbusTcpServer

        return PymodbusTcpServer(self._device(), address=self.address, trace_packet=self._trace_packet,
                                 trace_pdu=self._trace_pdu, trace_connect=on_connect)

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        if sending:
            return pdu
        if pdu.dev_id != self.spec.unit_id:
            return _OtherUnit(pdu)  # unlike RTU, not silence: the master hears 0x0B at once
        self._counters.lines_in += 1
        return pdu

    def _on_connection(self, up: bool) -> None:
        with self._masters_lock:
            self._masters = max(0, self._masters + (1 if up else -1))
            self.connections += int(up)
            now = self._masters
        _logger.info("Modbus TCP master %s (%d connected)", "connected" if up else "left", now)
