"""The one entry point the station uses: ``create_plc_link(spec, station) -> PlcLink``."""

from __future__ import annotations

from inspector.config.plc import PlcSpec
from inspector.plc.base import PlcLink
from inspector.plc.port import StationPort


def create_plc_link(spec: PlcSpec, port: StationPort) -> PlcLink:
    """A PLC link for ``spec.protocol`` serving ``port``; call ``start()`` to open the serial port (or listen).

    Nothing is opened here, so a missing port never fails construction: once started, the link retries
    with backoff and reports ``LinkState.LOST`` until the port appears. Raises PlcError when the
    transport cannot work at all (e.g. pymodbus missing or too old for ``protocol: modbus``).
    """
    if spec.protocol == "modbus-tcp":
        from inspector.plc.modbus_tcp import ModbusTcpServer

        return ModbusTcpServer(spec, port)
    if spec.protocol == "modbus":
        from inspector.plc.modbus import ModbusRtuServer

        return ModbusRtuServer(spec, port)
    from inspector.plc.ascii_server import AsciiServer

    return AsciiServer(spec, port)
