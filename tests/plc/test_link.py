"""The serial link: pyserial URLs, exclusive open, loss and reopen with backoff, observable state."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import serial

from inspector.plc.ascii_server import AsciiServer
from inspector.plc.base import LinkState
from inspector.plc.link import ReopenWait, SerialLink, open_serial
from inspector.plc.ptypair import PtyPort
from inspector.plc.simstation import SimulatedStation

from .conftest import PlcEnd, fast_spec, wait_until


class Recorder:
    """LinkProtocol that records what the link hands it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.events: list[str] = []
        self.got = threading.Condition()

    def connection_made(self) -> None:
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        with self.got:
            self.data += data
            self.got.notify_all()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append("lost" if exc else "closed")

    def wait_for(self, size: int, timeout: float = 10.0) -> bool:
        with self.got:
            return self.got.wait_for(lambda: len(self.data) >= size, timeout)


class PortEvents:
    def __init__(self) -> None:
        self.events: list[tuple[bool, str]] = []
        self.changed = threading.Condition()

    def __call__(self, up: bool, detail: str) -> None:
        with self.changed:
            self.events.append((up, detail))
            self.changed.notify_all()

    def wait_up(self, up: bool, timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: bool(self.events) and self.events[-1][0] is up, timeout)


def test_loop_url_round_trip() -> None:
    recorder, events = Recorder(), PortEvents()
    link = SerialLink(fast_spec("loop://"), recorder, events)
    link.start()
    try:
        assert events.wait_up(True)
        assert link.write(b"PING\r\n")
        assert recorder.wait_for(6)
        assert bytes(recorder.data) == b"PING\r\n"
    finally:
        link.stop()
    assert recorder.events == ["made", "closed"]
    assert not link.is_up


def test_ports_open_exclusively(pty: PtyPort) -> None:
    first = open_serial(fast_spec(pty.path))
    try:
        with pytest.raises(serial.SerialException):
            open_serial(fast_spec(pty.path))
    finally:
        first.close()
    open_serial(fast_spec(pty.path)).close()  # free again once closed


def test_missing_port_is_retried_until_it_appears(short_dir: Path, station: SimulatedStation) -> None:
    port = PtyPort(short_dir / "late")
    server = AsciiServer(fast_spec(port.path), station)
    seen: list[LinkState] = []
    server.on_state(lambda state, detail: seen.append(state))
    server.start()
    try:
        assert server.wait_for_state(LinkState.LOST, timeout=10)
        assert "No such file" in server.detail or "could not open" in server.detail
        with port:
            assert server.wait_for_state(LinkState.CONNECTED, timeout=10)
            assert PlcEnd(port).ask("PING") == b"PONG"
    finally:
        server.stop()
    assert seen[0] in (LinkState.CONNECTING, LinkState.LOST) and seen[-1] == LinkState.STOPPED


def test_port_vanishing_and_coming_back(pty: PtyPort, station: SimulatedStation) -> None:
    server = AsciiServer(fast_spec(pty.path), station)
    with server:
        assert server.wait_for_state(LinkState.CONNECTED)
        assert PlcEnd(pty).ask("PING") == b"PONG"
        pty.close()  # USB adapter pulled: the device node disappears, reads fail
        assert server.wait_for_state(LinkState.LOST, timeout=10)
        assert not server._link.write(b"PONG\r\n")  # writes while lost are refused, not raised
        pty.open()
        assert server.wait_for_state(LinkState.CONNECTED, timeout=10)
        assert PlcEnd(pty).ask("PING") == b"PONG"
        assert server.counters.reconnects == 1


def test_a_replugged_port_is_reopened_at_once_not_after_the_backoff(pty: PtyPort, station: SimulatedStation) -> None:
    """The backoff paces failing opens; a device path that comes back is reopened within a poll (faults.py serial)."""
    server = AsciiServer(fast_spec(pty.path, reconnect_min_s=5, reconnect_max_s=10), station)
    with server:
        assert server.wait_for_state(LinkState.CONNECTED)
        pty.close()  # USB adapter pulled
        assert server.wait_for_state(LinkState.LOST, timeout=10)
        time.sleep(0.3)  # the immediate reopen failed: the next attempt of the backoff is 5 s away
        pty.open()
        replugged = time.monotonic()
        assert server.wait_for_state(LinkState.CONNECTED, timeout=10)
        assert time.monotonic() - replugged < 1.0
        assert PlcEnd(pty).ask("PING") == b"PONG"


def test_stop_is_prompt_even_during_a_long_backoff(short_dir: Path, station: SimulatedStation) -> None:
    server = AsciiServer(fast_spec(short_dir / "never", reconnect_min_s=30, reconnect_max_s=60), station)
    server.start()
    assert server.wait_for_state(LinkState.LOST)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    assert server.state == LinkState.STOPPED


def test_state_callbacks_survive_a_failing_subscriber(pty: PtyPort, station: SimulatedStation) -> None:
    server = AsciiServer(fast_spec(pty.path), station)
    good: list[tuple[LinkState, str]] = []

    def bad(state: LinkState, detail: str) -> None:
        raise RuntimeError("GUI bug")

    server.on_state(bad)
    unsubscribe = server.on_state(lambda state, detail: good.append((state, detail)))
    with server:
        assert server.wait_for_state(LinkState.CONNECTED)
        unsubscribe()
    assert [s for s, _ in good] == [LinkState.CONNECTING, LinkState.CONNECTED]


def test_silent_plc_is_reported(pty: PtyPort, station: SimulatedStation) -> None:
    server = AsciiServer(fast_spec(pty.path, plc_silence_s=0.2), station)
    with server:
        assert server.wait_for_state(LinkState.SILENT, timeout=10)
        assert server.detail == "no data from the PLC"
        assert PlcEnd(pty).ask("PING") == b"PONG"
        assert server.wait_for_state(LinkState.CONNECTED, timeout=10)


def test_callback_exceptions_in_the_protocol_do_not_kill_the_link(pty: PtyPort, station: SimulatedStation,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    server = AsciiServer(fast_spec(pty.path), station)
    calls = []
    original = server.handle_line

    def flaky(line: bytes) -> None:
        calls.append(line)
        if line == b"BOOM":
            raise RuntimeError("protocol bug")
        original(line)

    monkeypatch.setattr(server, "handle_line", flaky)
    with server:
        assert server.wait_for_state(LinkState.CONNECTED)
        plc = PlcEnd(pty)
        plc.send("BOOM\r\n")
        assert plc.ask("PING") == b"PONG"
        assert wait_until(lambda: len(calls) == 2)
        assert server.state == LinkState.CONNECTED


# --- the wait before a reopen (pure timing logic, shared with the Modbus server) ---------------------------


def test_reopen_wait_is_one_slice_for_a_present_device_or_a_url(tmp_path: Path) -> None:
    present = tmp_path / "ttyUSB0"
    present.write_text("")
    for port in (str(present), "loop://", "COM3"):
        wait = ReopenWait(port, 0.4)
        first = wait.next_slice()
        assert first is not None and 0.3 < first <= 0.4
        assert wait.next_slice() is None and not wait.reappeared
    assert ReopenWait("loop://", 0.0).next_slice() is None


def test_reopen_wait_polls_a_missing_device_and_ends_when_it_returns(tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB0"
    wait = ReopenWait(str(device), 60.0, poll_s=0.01)
    assert wait.next_slice() == 0.01 and wait.next_slice() == 0.01  # polls, never the whole backoff
    device.write_text("")  # replugged
    assert wait.next_slice() is None and wait.reappeared


def test_reopen_wait_for_a_device_that_stays_away_ends_with_the_delay(tmp_path: Path) -> None:
    wait = ReopenWait(str(tmp_path / "gone"), 0.05, poll_s=0.01)
    t0 = time.monotonic()
    while (part := wait.next_slice()) is not None:
        time.sleep(part)
    assert 0.05 <= time.monotonic() - t0 < 1.0 and not wait.reappeared
