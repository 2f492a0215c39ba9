"""PlcSpec validation and the factory the station calls."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inspector.config.plc import PlcSpec
from inspector.plc.ascii_server import AsciiServer
from inspector.plc.base import LinkState
from inspector.plc.factory import create_plc_link
from inspector.plc.modbus import ModbusRtuServer
from inspector.plc.simstation import SimulatedStation


def test_defaults_are_safe() -> None:
    spec = PlcSpec()
    assert (spec.protocol, spec.baudrate, spec.parity, spec.stopbits, spec.exclusive) == ("ascii", 115200, "N", 1, True)
    assert spec.result_timeout_s == 2.0 and spec.checksum == "optional" and spec.rs485 is None


def test_parity_names_and_rs485() -> None:
    spec = PlcSpec(parity="even", stopbits=2, rs485={"delay_before_tx": 0.001})
    assert spec.parity == "E" and spec.rs485 is not None and spec.rs485.rts_level_for_tx


@pytest.mark.parametrize("bad", [
    {"protocol": "profinet"}, {"parity": "X"}, {"bytesize": 9}, {"stopbits": 3}, {"unit_id": 0},
    {"unit_id": 248}, {"checksum": "maybe"}, {"result_timeout_ms": 0}, {"reconnect_min_s": 5, "reconnect_max_s": 1},
    {"port": ""}, {"baudrate": 115200, "typo": 1},
])
def test_invalid_specs_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        PlcSpec(**bad)


def test_station_config_accepts_the_plc_section() -> None:
    from inspector.config import StationConfig

    from ..conftest import tiny_line

    config = StationConfig(lines=[tiny_line()], plc={"protocol": "modbus", "port": "/dev/ttyUSB0", "unit_id": 7})
    assert config.plc == PlcSpec(protocol="modbus", port="/dev/ttyUSB0", unit_id=7)


def test_factory_builds_without_opening_anything() -> None:
    station = SimulatedStation()
    ascii_link = create_plc_link(PlcSpec(port="/dev/does-not-exist"), station)
    modbus_link = create_plc_link(PlcSpec(protocol="modbus", port="/dev/does-not-exist"), station)
    assert isinstance(ascii_link, AsciiServer) and isinstance(modbus_link, ModbusRtuServer)
    assert ascii_link.state == modbus_link.state == LinkState.STOPPED
    modbus_link.stop()  # stop before start is a no-op
    ascii_link.stop()


@pytest.mark.parametrize("protocol", ["ascii", "modbus"])
def test_a_missing_port_is_lost_not_an_exception(protocol: str) -> None:
    with SimulatedStation() as station:
        link = create_plc_link(PlcSpec(protocol=protocol, port="/dev/does-not-exist", reconnect_min_s=0.05), station)
        with link:
            assert link.wait_for_state(LinkState.LOST, timeout=10)
        assert link.state == LinkState.STOPPED
