"""The PLC simulator: its checker flags every protocol violation; it passes a correct station."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.cli import main
from inspector.plc.ascii_server import AsciiServer
from inspector.plc.base import LinkState
from inspector.plc.modbus import ModbusRtuServer
from inspector.plc.ptypair import PtyPort, VirtualNullModem
from inspector.plc.sim import AsciiPlcSimulator, ModbusPlcSimulator, ReplyChecker, percentile
from inspector.plc.simstation import SimulatedStation

from .conftest import fast_spec

# --- checker (pure) -----------------------------------------------------------------------------


def test_checker_accepts_a_clean_exchange() -> None:
    checker = ReplyChecker(deadline_s=1.0)
    checker.sent("A", 0.0)
    checker.ack("A", 0.001)
    checker.result("A", "OK", 0.1, None, 0.01)
    assert checker.finish() == []
    assert checker.traces()[0].latency_ms == pytest.approx(10)


@pytest.mark.parametrize(("events", "expected"), [
    ([("ack", "A"), ("ack", "A"), ("res", "A")], "duplicate ACK"),
    ([("ack", "A"), ("res", "A"), ("res", "A")], "second result"),
    ([("res", "A")], "result before ACK"),
    ([("ack", "B"), ("ack", "A"), ("res", "A")], "never triggered"),
    ([("ack", "A")], "no result"),
    ([("res_late", "A")], "past the deadline"),
    ([("ack", "A"), ("ok_nan", "A")], "OK for a part that was not inspected"),
    ([("err", "A")], "refused E04"),
])
def test_checker_flags_violations(events: list[tuple[str, str]], expected: str) -> None:
    checker = ReplyChecker(deadline_s=1.0)
    checker.sent("A", 0.0)
    for kind, part in events:
        if kind == "ack":
            checker.ack(part, 0.01)
        elif kind == "res":
            checker.result(part, "NG", 0.5, "dent", 0.02)
        elif kind == "res_late":
            checker.ack(part, 0.01)
            checker.result(part, "NG", 0.5, "dent", 1.5)
        elif kind == "ok_nan":
            checker.result(part, "OK", math.nan, None, 0.02)
        elif kind == "err":
            checker.refused("E04", "queue full", 0.01)
    assert any(expected in m for m in checker.finish()), checker.mismatches


def test_percentile() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert math.isnan(percentile([], 50))


# --- simulator against the real links -----------------------------------------------------------


def test_ascii_simulator_passes_a_correct_station(modem: VirtualNullModem) -> None:
    # A deep queue and a generous deadline: a loaded CI box may stall the simulated station's worker
    # for seconds. This checks the matching of 200 parts; E04 and deadline misses are tested above,
    # latency is measured by benchmarks/plc_latency.py.
    with SimulatedStation(lines=("ring", "gear"), latency_s=0.001, queue_size=256) as station, \
            AsciiServer(fast_spec(modem.a.path), station) as link:
        assert link.wait_for_state(LinkState.CONNECTED)
        report = AsciiPlcSimulator(str(modem.b.path), deadline_ms=30_000).run(200, rate_hz=50)
    assert report.ok, report.mismatches
    assert len(report.parts) == 200 and report.count("MISSING") == 0
    assert report.count("OK") + report.count("NG") == 200
    assert "station READY, line ring" in report.notes[0]


def test_ascii_simulator_with_checksums(modem: VirtualNullModem, station: SimulatedStation) -> None:
    with AsciiServer(fast_spec(modem.a.path, checksum="required"), station) as link:
        assert link.wait_for_state(LinkState.CONNECTED)
        report = AsciiPlcSimulator(str(modem.b.path), checksum=True).run(20, rate_hz=50)
    assert report.ok, report.mismatches


def test_modbus_simulator_passes_a_correct_station(modem: VirtualNullModem, station: SimulatedStation) -> None:
    spec = fast_spec(modem.a.path, protocol="modbus", unit_id=5, heartbeat_ms=50)
    with ModbusRtuServer(spec, station) as link:
        assert link.wait_for_state(LinkState.CONNECTED)
        report = ModbusPlcSimulator(str(modem.b.path), unit_id=5).run(30, rate_hz=1000)
    assert report.ok, report.mismatches
    assert [p.part_id for p in report.parts] == [str(i) for i in range(1, 31)]


def test_simulator_reports_faults_without_failing(modem: VirtualNullModem, station: SimulatedStation) -> None:
    station.fault_parts = {"P000002"}
    with AsciiServer(fast_spec(modem.a.path), station) as link:
        assert link.wait_for_state(LinkState.CONNECTED)
        report = AsciiPlcSimulator(str(modem.b.path)).run(3, rate_hz=100)
    assert report.ok and report.count("FAULT") == 1


def test_simulator_pings_until_a_late_station_answers(modem: VirtualNullModem, station: SimulatedStation) -> None:
    """A station that opens its port after the PLC's first PING (which the open flushes) still handshakes."""
    result: list = []
    sim = AsciiPlcSimulator(str(modem.b.path), deadline_ms=10_000)
    runner = threading.Thread(target=lambda: result.append(sim.run(3, rate_hz=100)))
    runner.start()
    threading.Event().wait(0.8)  # the first PING goes out to a closed port
    with AsciiServer(fast_spec(modem.a.path), station):
        runner.join(timeout=30)
    (report,) = result
    assert report.ok, report.mismatches
    assert len(report.parts) == 3


def test_simulator_gives_up_on_a_silent_station(modem: VirtualNullModem) -> None:
    report = AsciiPlcSimulator(str(modem.b.path), handshake_s=0.6).run(3, rate_hz=100)
    assert report.mismatches == ["station does not answer PING (check port, baud rate, protocol)"]
    assert report.elapsed_s < 5


class RogueStation:
    """A broken station on a pty: answers PING/STATUS, then ACKs every trigger twice and never RES."""

    def __init__(self, port: PtyPort) -> None:
        self.port = port
        self._thread = threading.Thread(target=self._run, name="plc-rogue", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = b""
        while True:
            try:
                data = os.read(self.port.master, 1024)
            except OSError:
                return
            buf += data
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                line = line.strip()
                if line == b"PING":
                    os.write(self.port.master, b"PONG\r\n")
                elif line == b"STATUS":
                    os.write(self.port.master, b"STATUS,READY,x,y\r\n")
                elif line.startswith(b"TRIG,"):
                    os.write(self.port.master, b"ACK," + line[5:] + b"\r\nACK," + line[5:] + b"\r\n")

    def join(self) -> None:
        self._thread.join(timeout=5)


@pytest.fixture
def rogue(short_dir: Path) -> Iterator[PtyPort]:
    port = PtyPort(short_dir / "rogue").open()
    station = RogueStation(port)
    yield port
    port.close()
    station.join()


def test_simulator_catches_a_broken_station(rogue: PtyPort) -> None:
    report = AsciiPlcSimulator(str(rogue.path), deadline_ms=100).run(2, rate_hz=100)
    assert not report.ok
    assert "part P000001: duplicate ACK" in report.mismatches
    assert "part P000002: no result" in report.mismatches


# --- CLI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["ascii", "modbus"])
def test_cli_demo_passes(protocol: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plc-sim", "--demo", "--protocol", protocol, "--parts", "20", "--rate", "200"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_cli_exit_codes(rogue: PtyPort, short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plc-sim", "--port", str(rogue.path), "--parts", "2", "--rate", "100", "--timeout-ms", "100"]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["plc-sim", "--port", str(short_dir / "missing"), "--parts", "1"]) == 2
    assert main(["plc-sim", "--demo", "--parts", "0"]) == 2
    assert "--parts must be >= 1" in capsys.readouterr().err
