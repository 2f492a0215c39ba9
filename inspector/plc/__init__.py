"""PLC integration: pure protocol framing, serial link, Modbus RTU server, simulator.

Data path: PLC bytes -> link.SerialLink (pyserial, reconnect) -> protocol (pure framing / parsing)
-> ascii_server.AsciiServer or modbus.ModbusRtuServer -> tracker.TriggerTracker (exactly one verdict,
deadline) -> StationPort. The station builds a link with ``factory.create_plc_link(spec, station)``.
"""
