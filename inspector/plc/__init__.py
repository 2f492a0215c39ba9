"""PLC integration: pure protocol framing, serial link, Modbus RTU server, simulator."""
