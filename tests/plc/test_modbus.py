"""Modbus RTU end to end: pymodbus client as the PLC, over a virtual null-modem of real ptys."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from inspector.plc import registers as reg
from inspector.plc.base import LinkState
from inspector.plc.modbus import ModbusRtuServer
from inspector.plc.port import StationStatus
from inspector.plc.ptypair import VirtualNullModem
from inspector.plc.simstation import SimulatedStation

from .conftest import fast_spec, wait_until

UNIT = 3


@pytest.fixture
def server(modem: VirtualNullModem, station: SimulatedStation) -> Iterator[ModbusRtuServer]:
    link = ModbusRtuServer(fast_spec(modem.a.path, protocol="modbus", unit_id=UNIT, heartbeat_ms=50), station)
    link.start()
    assert link.wait_for_state(LinkState.CONNECTED, timeout=5), link.detail
    yield link
    link.stop()


@pytest.fixture
def client(modem: VirtualNullModem) -> Iterator[ModbusSerialClient]:
    plc = ModbusSerialClient(str(modem.b.path), baudrate=115200, timeout=1.0, retries=0)
    assert plc.connect()
    yield plc
    plc.close()


def block(client: ModbusSerialClient, unit: int = UNIT) -> reg.ResultBlock:
    response = client.read_holding_registers(100, count=8, device_id=unit)
    assert not response.isError(), response
    return reg.ResultBlock.from_registers(response.registers)


def trigger(client: ModbusSerialClient, part: int, timeout: float = 10.0) -> reg.ResultBlock:
    """The documented PLC handshake; returns registers 100..107 once 102 moved."""
    seq = block(client).seq
    assert not client.write_register(0, part, device_id=UNIT).isError()
    echo = client.write_coil(0, True, device_id=UNIT)
    assert echo.bits[0] is True  # the write is echoed as written, the coil clears afterwards
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = block(client)
        if result.seq != seq:
            assert (result.seq - seq) & 0xFFFF == 1, "one result per trigger"
            assert client.read_coils(0, count=1, device_id=UNIT).bits[0] is False
            return result
    raise AssertionError(f"no result for part {part} within {timeout} s")


def test_200_triggers_each_answered_once_with_the_right_id(server, client, station: SimulatedStation) -> None:
    seen = []
    for part in range(1, 201):
        result = trigger(client, part)
        assert result.part == part
        seen.append(result)
    assert [v.part_id for v in station.answered] == [str(p) for p in range(1, 201)]
    for result, verdict in zip(seen, station.answered, strict=True):  # registers == what the station decided
        assert result.verdict == (1 if verdict.verdict == "OK" else 2)
        assert result.score == reg.score_register(verdict.score)
        assert result.defect == verdict.defect_index and result.error == 0
    assert server.counters.triggers == 200 and server.counters.results == 200


def test_register_map_addresses_are_protocol_addresses(server, client) -> None:
    assert len(client.read_holding_registers(100, count=8, device_id=UNIT).registers) == 8
    assert not client.write_register(0, 4242, device_id=UNIT).isError()
    assert client.read_holding_registers(0, count=1, device_id=UNIT).registers == [4242]
    assert server.registers.part_id == 4242  # no off-by-one between the wire and our map
    assert client.read_holding_registers(1, count=1, device_id=UNIT).isError()  # gap 1..99
    assert client.read_holding_registers(100, count=9, device_id=UNIT).isError()  # 108 does not exist
    assert client.write_register(102, 7, device_id=UNIT).isError()  # station-owned registers are read-only
    assert client.write_registers(103, [1, 1], device_id=UNIT).isError()
    assert client.read_discrete_inputs(0, count=1, device_id=UNIT).isError()  # not part of the map
    assert client.read_input_registers(100, count=1, device_id=UNIT).isError()
    assert client.read_coils(0, count=1, device_id=UNIT).bits[0] is False


def test_heartbeat_counts_and_status_reflects_the_station(server, client, station: SimulatedStation) -> None:
    first = block(client).heartbeat
    assert wait_until(lambda: block(client).heartbeat != first, timeout=10)
    assert block(client).status == reg.StatusCode.READY
    station.fault_all = True
    assert wait_until(lambda: block(client).status == reg.StatusCode.FAULT, timeout=10)


def test_a_hung_station_freezes_the_heartbeat(modem: VirtualNullModem, client) -> None:
    """Dead vs slow: the heartbeat only advances while the station answers status()."""
    hang, hanging, release = threading.Event(), threading.Event(), threading.Event()

    class Hanging(SimulatedStation):
        def status(self) -> StationStatus:
            if hang.is_set():
                hanging.set()
                release.wait(5)
            return super().status()

    with Hanging() as station:
        link = ModbusRtuServer(fast_spec(modem.a.path, protocol="modbus", unit_id=UNIT, heartbeat_ms=20), station)
        with link:
            assert link.wait_for_state(LinkState.CONNECTED)
            start = block(client).heartbeat
            assert wait_until(lambda: block(client).heartbeat != start, timeout=10)
            hang.set()
            assert hanging.wait(2)  # the heartbeat thread is stuck in status(): no tick can be in flight
            frozen = block(client).heartbeat
            assert not wait_until(lambda: block(client).heartbeat != frozen, timeout=0.3)  # comms fine, beat stuck
            release.set()
            assert wait_until(lambda: block(client).heartbeat != frozen, timeout=10)


def test_requests_for_other_units_get_no_answer(server, client) -> None:
    with pytest.raises(ModbusIOException):
        client.read_holding_registers(100, count=8, device_id=UNIT + 1)
    assert block(client).status == reg.StatusCode.READY  # and the bus is still fine


def test_station_fault_is_ng_with_error_never_ok(server, client, station: SimulatedStation) -> None:
    station.fault_parts = {"11"}
    result = trigger(client, 11)
    assert (result.part, result.verdict, result.score, result.defect, result.error) == (11, 2, 65535, 0, 10)


def test_refused_trigger_publishes_ng_with_the_reason(server, client, station: SimulatedStation) -> None:
    station.not_ready = True
    result = trigger(client, 12)
    assert (result.part, result.verdict, result.error) == (12, 2, reg.ResultError.NOT_READY)
    assert server.counters.errors_sent == 1


def test_late_result_never_published_after_timeout(modem: VirtualNullModem, client,
                                                   station: SimulatedStation) -> None:
    spec = fast_spec(modem.a.path, protocol="modbus", unit_id=UNIT, result_timeout_ms=100)
    with ModbusRtuServer(spec, station) as link:
        assert link.wait_for_state(LinkState.CONNECTED)
        station.slow_parts["13"] = 0.4
        result = trigger(client, 13)
        assert (result.verdict, result.error) == (2, reg.ResultError.TIMEOUT)
        assert wait_until(lambda: link.counters.late_dropped == 1, timeout=10)
        assert block(client).seq == result.seq  # the late verdict did not move 102
        assert trigger(client, 14).part == 14


def test_a_retried_coil_write_does_not_inspect_twice(server, client, station: SimulatedStation) -> None:
    station.slow_parts["15"] = 0.2
    seq = block(client).seq
    client.write_register(0, 15, device_id=UNIT)
    client.write_coil(0, True, device_id=UNIT)
    assert wait_until(lambda: not client.read_coils(0, count=1, device_id=UNIT).bits[0])
    client.write_coil(0, True, device_id=UNIT)  # master retry after a lost response
    assert wait_until(lambda: block(client).seq != seq)
    assert station.received.count("15") == 1


def test_a_replugged_port_is_reopened_at_once_not_after_the_backoff(modem: VirtualNullModem,
                                                                    station: SimulatedStation) -> None:
    """As the ASCII link: the backoff paces failing opens, a device path that comes back is reopened at once."""
    link = ModbusRtuServer(fast_spec(modem.a.path, protocol="modbus", unit_id=UNIT, reconnect_min_s=5,
                                     reconnect_max_s=10), station)
    link.start()
    try:
        assert link.wait_for_state(LinkState.CONNECTED, timeout=5), link.detail
        modem.unplug()
        assert link.wait_for_state(LinkState.LOST, timeout=10)
        time.sleep(0.3)  # the next attempt of the backoff is 5 s away
        modem.replug()
        replugged = time.monotonic()
        assert link.wait_for_state(LinkState.CONNECTED, timeout=4)
        assert time.monotonic() - replugged < 1.5
    finally:
        link.stop()


def test_port_vanishes_mid_run_and_comes_back(server, modem: VirtualNullModem, station: SimulatedStation) -> None:
    plc = ModbusSerialClient(str(modem.b.path), baudrate=115200, timeout=1.0, retries=0)
    assert plc.connect()
    try:
        for part in range(1, 21):
            assert trigger(plc, part).part == part
    finally:
        plc.close()
    modem.unplug()
    assert server.wait_for_state(LinkState.LOST, timeout=10)
    modem.replug()
    assert server.wait_for_state(LinkState.CONNECTED, timeout=5)
    plc = ModbusSerialClient(str(modem.b.path), baudrate=115200, timeout=1.0, retries=0)
    assert plc.connect()
    try:
        for part in range(21, 41):
            assert trigger(plc, part).part == part
    finally:
        plc.close()
    assert len(station.answered) == 40 and server.counters.reconnects == 1
