"""Modbus TCP end to end: real pymodbus TCP clients as the masters, real sockets, fuzzed raw frames."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from inspector.config.plc import PlcSpec, parse_tcp_port
from inspector.plc import registers as reg
from inspector.plc.base import LinkState
from inspector.plc.factory import create_plc_link
from inspector.plc.modbus_tcp import ModbusTcpServer
from inspector.plc.sim import ModbusPlcSimulator
from inspector.plc.simstation import SimulatedStation
from tests.ports import free_port

from .conftest import fast_spec, wait_until
from .test_modbus import block, trigger

UNIT = 3


@pytest.fixture
def url() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def server(url: str, station: SimulatedStation) -> Iterator[ModbusTcpServer]:
    link = create_plc_link(fast_spec(url, protocol="modbus-tcp", unit_id=UNIT, heartbeat_ms=50), station)
    assert isinstance(link, ModbusTcpServer)
    link.start()
    assert link.wait_for_state(LinkState.CONNECTED, timeout=5), link.detail
    yield link
    link.stop()


def connect(url: str) -> ModbusTcpClient:
    host, port = parse_tcp_port(url)
    client = ModbusTcpClient(host, port=port, timeout=1.0, retries=0)
    assert client.connect()
    return client


@pytest.fixture
def client(server: ModbusTcpServer, url: str) -> Iterator[ModbusTcpClient]:
    plc = connect(url)
    yield plc
    plc.close()


def test_tcp_answers_exactly_like_rtu(server, client, station: SimulatedStation) -> None:
    seen = [trigger(client, part) for part in range(1, 51)]
    assert [r.part for r in seen] == list(range(1, 51))
    for result, verdict in zip(seen, station.answered, strict=True):  # registers == what the station decided
        assert result.verdict == (1 if verdict.verdict == "OK" else 2)
        assert result.score == reg.score_register(verdict.score)
        assert result.defect == verdict.defect_index and result.error == 0
    assert server.counters.triggers == 50 and server.counters.results == 50
    first = block(client).heartbeat
    assert wait_until(lambda: (block(client).heartbeat - first) & 0xFFFF >= 2, timeout=3), "heartbeat 101 stuck"
    assert block(client).status == reg.StatusCode.READY


def test_several_masters_share_one_map(server, url: str, station: SimulatedStation) -> None:
    masters = [connect(url) for _ in range(3)]
    try:
        assert wait_until(lambda: server.masters == 3), server.masters
        for i in range(9):  # the masters take turns triggering; every one reads every result
            result = trigger(masters[i % 3], 100 + i)
            assert result.part == 100 + i
            assert {block(m).seq for m in masters} == {result.seq}

        stop = threading.Event()
        errors: list[str] = []

        def poll(m: ModbusTcpClient) -> None:  # SCADA pollers reading while the PLC triggers
            while not stop.is_set():
                r = m.read_holding_registers(100, count=8, device_id=UNIT)
                if r.isError():
                    errors.append(str(r))

        pollers = [threading.Thread(target=poll, args=(m,)) for m in masters[1:]]
        for t in pollers:
            t.start()
        try:
            assert [trigger(masters[0], 200 + i).part for i in range(10)] == list(range(200, 210))
        finally:
            stop.set()
            for t in pollers:
                t.join()
        assert not errors
    finally:
        for m in masters:
            m.close()
    assert wait_until(lambda: server.masters == 0)
    assert server.state == LinkState.CONNECTED  # masters leaving is not a station fault
    assert server.connections == 3


def test_a_master_dropping_mid_request_is_not_a_fault(server, client, url: str) -> None:
    host, port = parse_tcp_port(url)
    for cut in (3, 7, 9):  # half an MBAP header, a header without its PDU, half a request
        frame = struct.pack(">HHHBBHH", 1, 0, 6, UNIT, 3, 100, 8)
        with socket.create_connection((host, port), timeout=1) as raw:
            raw.sendall(frame[:cut])
        # and one that asks for the block and leaves before reading the answer
        with socket.create_connection((host, port), timeout=1) as raw:
            raw.sendall(frame)
    assert server.state == LinkState.CONNECTED
    assert trigger(client, 7).part == 7


def test_other_unit_ids_get_an_exception_not_silence(server, client) -> None:
    response = client.read_holding_registers(100, count=8, device_id=UNIT + 1)
    assert response.isError() and response.exception_code == 0x0B
    assert not client.read_holding_registers(100, count=8, device_id=UNIT).isError()


def test_a_taken_address_is_lost_with_the_address_named(url: str, station: SimulatedStation) -> None:
    host, port = parse_tcp_port(url)
    with socket.socket() as squatter:
        squatter.bind((host, port))
        squatter.listen()
        link = ModbusTcpServer(fast_spec(url, protocol="modbus-tcp"), station)
        with link:
            assert link.wait_for_state(LinkState.LOST, timeout=5)
            assert url in link.detail
        assert link.state == LinkState.STOPPED


def test_the_plc_simulator_drives_tcp(server, url: str) -> None:
    report = ModbusPlcSimulator(url, unit_id=UNIT, deadline_ms=2500).run(20, 200.0)
    assert report.ok, report.mismatches
    assert report.protocol == "modbus-tcp" and report.count("OK") + report.count("NG") == 20


def test_tcp_port_form_is_checked_with_the_expected_form_named() -> None:
    assert parse_tcp_port("tcp://0.0.0.0:15020") == ("0.0.0.0", 15020)
    assert parse_tcp_port("tcp://plc-gw") == ("plc-gw", 502)
    for bad in ("/dev/ttyUSB0", "tcp://:502", "tcp://host:99999", "tcp://host:abc", "udp://host:502"):
        with pytest.raises(ValueError, match="tcp://HOST:PORT"):
            parse_tcp_port(bad)
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        PlcSpec(protocol="modbus-tcp", port="/dev/ttyUSB0")


_MBAP = st.builds(
    lambda tid, proto, length, unit, body: struct.pack(">HHHB", tid, proto, length, unit) + body,
    st.integers(0, 0xFFFF), st.sampled_from([0, 0, 1, 0xFFFF]), st.integers(0, 300),
    st.sampled_from([UNIT, UNIT, 0, 255]), st.binary(max_size=40))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.one_of(_MBAP, st.binary(min_size=1, max_size=64)), min_size=1, max_size=4))
def test_fuzzed_frames_never_take_the_server_down(server, client, url: str, frames: list[bytes]) -> None:
    host, port = parse_tcp_port(url)
    with socket.create_connection((host, port), timeout=1) as raw:
        for frame in frames:
            raw.sendall(frame)
        raw.settimeout(0.02)
        try:
            while raw.recv(4096):
                pass
        except (TimeoutError, ConnectionError):
            pass
    # The listener and every other master are untouched.
    assert server.state == LinkState.CONNECTED
    before = block(client)
    assert before.status in (0, 1, 2)
    assert not client.read_holding_registers(100, count=8, device_id=UNIT).isError()


def test_fuzzed_run_still_answers_a_full_handshake(server, client) -> None:
    assert trigger(client, 4242).part == 4242


def test_run_refuses_a_serial_port_for_modbus_tcp_before_loading(tmp_path, capsys) -> None:
    import yaml

    from inspector.cli import main
    from tests.station.conftest import tiny_station_dict

    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(tiny_station_dict(tmp_path, tmp_path / "cache")))
    assert main(["run", "--config", str(config), "--trigger", "plc", "--plc-protocol", "modbus-tcp",
                 "--plc-port", "/dev/ttyUSB0"]) == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err
