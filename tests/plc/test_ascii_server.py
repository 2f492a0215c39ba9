"""The ASCII protocol end to end over a real pseudo-terminal, with a simulated station."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.plc import protocol as proto
from inspector.plc.base import LinkState
from inspector.plc.ptypair import PtyPort
from inspector.plc.simstation import SimulatedStation

from .conftest import PlcEnd, wait_until


def parse(line: bytes) -> object:
    return proto.parse_reply(line).message


def test_200_triggers_each_answered_once_with_the_right_id(ascii_server, plc: PlcEnd,
                                                          station: SimulatedStation) -> None:
    station._queue.maxsize = 256  # the whole burst fits: this test is about bookkeeping, not back-pressure
    server = ascii_server()
    ids = [f"P{i:04d}" for i in range(200)]
    plc.send(b"".join(f"TRIG,{pid}\r\n".encode() for pid in ids))
    replies = [parse(line) for line in plc.lines(400, timeout=20)]
    acks = Counter(r.part_id for r in replies if isinstance(r, proto.Ack))
    results = {r.part_id: r for r in replies if isinstance(r, proto.Result)}
    assert acks == Counter(ids)
    assert sorted(results) == ids and len([r for r in replies if isinstance(r, proto.Result)]) == 200
    for pid in ids:  # ACK before RES, always
        ack_at = next(i for i, r in enumerate(replies) if isinstance(r, proto.Ack) and r.part_id == pid)
        res_at = next(i for i, r in enumerate(replies) if isinstance(r, proto.Result) and r.part_id == pid)
        assert ack_at < res_at
    # what the PLC saw equals what the station decided (what its audit log records)
    for verdict in station.answered:
        assert proto.format_result(verdict) == f"RES,{verdict.part_id},{results[verdict.part_id].verdict}," + (
            f"{verdict.score:.3f},{verdict.defect or '-'}")
    assert plc.quiet(0.05)
    assert server.counters.triggers == 200 and server.counters.results == 200


def test_ping_status_and_changeover(ascii_server, plc: PlcEnd, station: SimulatedStation) -> None:
    ascii_server()
    assert plc.ask("PING") == b"PONG"
    assert plc.ask("STATUS") == b"STATUS,READY,ring,sim-1"
    station.changeover_s = 0.3
    plc.send("LINE,gear\r\n")
    assert plc.ask("PING") == b"PONG"  # the link stays responsive during a changeover
    assert plc.ask("LINE,ring") == b"ERR,E05,a changeover is in progress"
    assert plc.line() == b"LINE,gear,OK"
    assert plc.ask("STATUS") == b"STATUS,READY,gear,sim-1"
    assert plc.ask("LINE,nope") == b"ERR,E06,unknown line nope"


@pytest.mark.parametrize(("line", "reply"), [
    ("HELLO", b"ERR,E01,unknown command 'HELLO'"),
    ("TRIG,bad id", b"ERR,E02,part_id must be 1-32 of A-Z a-z 0-9 _ -"),
    ("TRIG,a,b", b"ERR,E02,expected TRIG;<part_id>"),
    ("PING*00", proto.encode_line("ERR,E03,checksum mismatch (expected 10)", True)[:-2]),
])
def test_error_replies(ascii_server, plc: PlcEnd, line: str, reply: bytes) -> None:
    ascii_server()
    assert plc.ask(line) == reply
    assert plc.ask("PING") == b"PONG"


def test_overlong_line_gets_one_error_and_the_link_recovers(ascii_server, plc: PlcEnd) -> None:
    ascii_server()
    plc.send(b"X" * 5000 + b"\r\n")
    assert plc.line() == b"ERR,E02,line longer than 128 bytes"
    assert plc.ask("PING") == b"PONG"
    assert plc.quiet()


def test_checksummed_requests_get_checksummed_replies(ascii_server, plc: PlcEnd) -> None:
    ascii_server()
    reply = plc.ask(proto.encode_line("TRIG,C1", checksum=True))
    assert proto.parse_reply(reply, "required") == (proto.Ack("C1"), True)
    result, checksummed = proto.parse_reply(plc.line(), "required")
    assert checksummed and result.part_id == "C1"


def test_required_checksum_mode(ascii_server, plc: PlcEnd) -> None:
    ascii_server(checksum="required")
    assert plc.ask("PING") == proto.encode_line("ERR,E03,checksum required", True)[:-2]
    assert plc.ask("PING*10") == proto.encode_line("PONG", True)[:-2]


def test_queue_full_and_not_ready(ascii_server, plc: PlcEnd, station: SimulatedStation) -> None:
    ascii_server()
    station._queue.maxsize = 1
    station.latency_s = 0.3
    assert plc.ask("TRIG,Q0") == b"ACK,Q0"
    assert wait_until(lambda: station._queue.empty())  # Q0 is being inspected
    assert plc.ask("TRIG,Q1") == b"ACK,Q1"  # Q1 waits in the queue (size 1)
    assert plc.ask("TRIG,Q2") == b"ERR,E04,inspection queue full"
    station.not_ready = True
    assert plc.ask("TRIG,Q9") == b"ERR,E05,station not ready"
    results = sorted(plc.lines(2))
    assert [r.split(b",")[1] for r in results] == [b"Q0", b"Q1"]


def test_duplicate_pending_part_is_refused(ascii_server, plc: PlcEnd, station: SimulatedStation) -> None:
    ascii_server()
    station.slow_parts["D1"] = 0.2
    assert plc.ask("TRIG,D1") == b"ACK,D1"
    assert plc.ask("TRIG,D1") == b"ERR,E02,part D1 is already pending"
    assert plc.line().startswith(b"RES,D1,")
    assert plc.quiet()


def test_station_fault_is_ng_fault_never_ok(ascii_server, plc: PlcEnd, station: SimulatedStation) -> None:
    ascii_server()
    station.fault_parts = {"F1"}
    assert plc.ask("TRIG,F1") == b"ACK,F1"
    assert plc.line() == b"RES,F1,NG,nan,FAULT"
    station.fault_all = True
    assert plc.ask("STATUS").startswith(b"STATUS,FAULT,")
    for i in range(20):
        assert plc.ask(f"TRIG,F{i + 2}") == f"ACK,F{i + 2}".encode()
        assert plc.line() == f"RES,F{i + 2},NG,nan,FAULT".encode()


def test_late_result_never_sent_after_timeout(ascii_server, plc: PlcEnd, station: SimulatedStation) -> None:
    server = ascii_server(result_timeout_ms=100)
    station.slow_parts["S1"] = 0.4
    assert plc.ask("TRIG,S1") == b"ACK,S1"
    assert plc.line() == b"RES,S1,NG,nan,TIMEOUT"
    assert wait_until(lambda: server.counters.late_dropped == 1, timeout=10)  # the station did answer, later
    assert station.answered[-1].part_id == "S1" and station.answered[-1].fault is None
    assert plc.quiet(0.1)
    assert plc.ask("TRIG,S2") == b"ACK,S2"  # and the next part is business as usual
    assert plc.line().startswith(b"RES,S2,")


def test_station_double_reply_reaches_the_plc_once(ascii_server, plc: PlcEnd, station: SimulatedStation) -> None:
    server = ascii_server()
    station.double_reply = True
    assert plc.ask("TRIG,X1") == b"ACK,X1"
    assert plc.line().startswith(b"RES,X1,")
    assert wait_until(lambda: server.counters.late_dropped == 1)
    assert plc.quiet()


def test_stopping_answers_pending_parts_with_fault(ascii_server, plc: PlcEnd, station: SimulatedStation) -> None:
    server = ascii_server(result_timeout_ms=10_000)
    station.slow_parts["L1"] = 0.5
    assert plc.ask("TRIG,L1") == b"ACK,L1"
    server.stop()
    assert plc.line() == b"RES,L1,NG,nan,FAULT"
    assert server.state == LinkState.STOPPED


def test_port_vanishes_mid_run_and_comes_back(ascii_server, pty: PtyPort, station: SimulatedStation) -> None:
    server = ascii_server()
    plc = PlcEnd(pty)
    for i in range(50):
        assert plc.ask(f"TRIG,A{i}") == f"ACK,A{i}".encode()
        assert plc.line().startswith(f"RES,A{i},".encode())
    pty.close()
    assert server.wait_for_state(LinkState.LOST, timeout=10)
    pty.open()
    assert server.wait_for_state(LinkState.CONNECTED, timeout=10)
    plc = PlcEnd(pty)
    for i in range(50):
        assert plc.ask(f"TRIG,B{i}") == f"ACK,B{i}".encode()
        assert plc.line().startswith(f"RES,B{i},".encode())
    assert len(station.answered) == 100 and server.counters.reconnects == 1


def test_replies_from_many_threads_never_interleave(ascii_server, plc: PlcEnd, station: SimulatedStation) -> None:
    """RES lines come from the station thread while the reader thread writes ACK/PONG: whole lines only."""
    station._queue.maxsize = 256
    station.latency_s = 0
    ascii_server()
    plc.send(b"".join(f"TRIG,M{i}\r\nPING\r\n".encode() for i in range(100)))
    lines = plc.lines(300, timeout=20)
    for line in lines:
        assert isinstance(parse(line), proto.Ack | proto.Result | proto.Pong), line


# --- malformed frames over the live link --------------------------------------------------------


@pytest.fixture
def live_server(ascii_server):
    """One server for all hypothesis examples of a test (function-scoped fixtures run once per test)."""
    return ascii_server()

JUNK = st.binary(min_size=1, max_size=160).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"") or b"?")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(JUNK, min_size=5, max_size=8))
def test_fuzz_malformed_frames_over_the_link(live_server, plc: PlcEnd, frames: list[bytes]) -> None:
    """Random frames: one ERR each (or a valid reply if hypothesis found a valid line), link stays up."""
    for frame in frames:
        try:
            message, _ = proto.parse_request(frame)
        except proto.ProtocolError:
            message = None
        if isinstance(message, proto.Trigger):
            continue  # a valid trigger would start an inspection; not what this test is about
        reply = plc.ask(frame + b"\r\n")
        if message is None:
            assert reply.startswith(b"ERR,E0"), (frame, reply)
    assert plc.ask("PING") == b"PONG"
    assert live_server.state == LinkState.CONNECTED
