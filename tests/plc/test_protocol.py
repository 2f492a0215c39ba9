"""The pure ASCII protocol: framing, checksums, parsing, message building; fuzzed with hypothesis."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.plc import protocol as proto
from inspector.plc.port import PartVerdict, StationState, StationStatus
from inspector.plc.protocol import ErrorCode, ProtocolError

from .conftest import feed_in_chunks

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODES = st.sampled_from(list(proto.ChecksumMode))


def code_of(line: bytes, mode: str = "optional") -> str:
    with pytest.raises(ProtocolError) as info:
        proto.parse_request(line, mode)
    return info.value.code


# --- checksums ----------------------------------------------------------------------------------


def test_xor_checksum_known_values() -> None:
    assert proto.xor_checksum(b"PING") == 0x10
    assert proto.encode_line("PING", checksum=True) == b"PING*10\r\n"
    assert proto.encode_line("TRIG,A1") == b"TRIG,A1\r\n"


def test_checksum_verified_when_present() -> None:
    assert proto.parse_request(b"PING*10") == (proto.Ping(), True)
    assert proto.parse_request(b"PING*10".lower().upper()) == (proto.Ping(), True)
    assert proto.parse_request(b"TRIG,a1*" + b"%02x" % proto.xor_checksum(b"TRIG,a1")).message == proto.Trigger("a1")
    assert code_of(b"PING*11") == ErrorCode.CHECKSUM
    assert code_of(b"PING*1") == ErrorCode.CHECKSUM
    assert code_of(b"PING*1G") == ErrorCode.CHECKSUM
    assert code_of(b"PING*") == ErrorCode.CHECKSUM


def test_checksum_required_and_off_modes() -> None:
    assert code_of(b"PING", "required") == ErrorCode.CHECKSUM
    assert proto.parse_request(b"PING*10", "required") == (proto.Ping(), True)
    # off: a well-formed suffix is stripped unchecked, nothing is reported as checksummed
    assert proto.parse_request(b"PING*99", "off") == (proto.Ping(), False)
    assert code_of(b"TRIG,A*B*C", "off") == ErrorCode.BAD_FIELD


def test_checksum_error_remembers_the_line_had_one() -> None:
    with pytest.raises(ProtocolError) as info:
        proto.parse_request(b"PING*00")
    assert info.value.checksummed


# --- requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "message"), [
    (b"TRIG,P-001_a", proto.Trigger("P-001_a")),
    (b"trig,7", proto.Trigger("7")),
    (b"TRIG," + b"x" * 32, proto.Trigger("x" * 32)),
    (b"PING", proto.Ping()),
    (b"STATUS", proto.StatusRequest()),
    (b"LINE,ring-2.b", proto.LineRequest("ring-2.b")),
])
def test_valid_requests(line: bytes, message: object) -> None:
    assert proto.parse_request(line) == (message, False)


@pytest.mark.parametrize(("line", "code"), [
    (b"HELLO", ErrorCode.UNKNOWN_COMMAND),
    (b"", ErrorCode.UNKNOWN_COMMAND),
    (b"TRIG", ErrorCode.BAD_FIELD),
    (b"TRIG,", ErrorCode.BAD_FIELD),
    (b"TRIG," + b"x" * 33, ErrorCode.BAD_FIELD),
    (b"TRIG,a b", ErrorCode.BAD_FIELD),
    (b"TRIG,a,b", ErrorCode.BAD_FIELD),
    (b"TRIG, a", ErrorCode.BAD_FIELD),
    (b"TRIG,\xc3\xa9", ErrorCode.BAD_FIELD),
    (b"TRIG,a\tb", ErrorCode.BAD_FIELD),
    (b"PING,1", ErrorCode.BAD_FIELD),
    (b"STATUS,x", ErrorCode.BAD_FIELD),
    (b"LINE", ErrorCode.BAD_FIELD),
    (b"LINE,-bad", ErrorCode.BAD_FIELD),
    (b"X" * 129, ErrorCode.BAD_FIELD),
])
def test_bad_requests(line: bytes, code: str) -> None:
    assert code_of(line) == code


# --- framing ------------------------------------------------------------------------------------


def test_splitter_crlf_lf_and_chunks() -> None:
    splitter = proto.LineSplitter()
    assert splitter.feed(b"PI") == []
    assert splitter.feed(b"NG\r") == []
    assert splitter.feed(b"\nSTATUS\nTRIG,1\r\n\r\n\n") == [b"PING", b"STATUS", b"TRIG,1"]


def test_splitter_caps_line_length_and_recovers() -> None:
    splitter = proto.LineSplitter()
    exact = b"A" * proto.MAX_LINE_BYTES
    assert splitter.feed(exact + b"\r\n") == [exact]
    out = splitter.feed(b"B" * 100)
    out += splitter.feed(b"B" * 100)  # cap passed without a terminator: one marker, bytes dropped
    out += splitter.feed(b"B" * 1000)
    assert len(out) == 1 and isinstance(out[0], proto.Overlong)
    assert splitter.feed(b"tail\r\nPING\r\n") == [b"PING"]  # the rest of the long line is discarded
    assert isinstance(splitter.feed(b"C" * 129 + b"\n")[0], proto.Overlong)


def test_splitter_reset_drops_partial_line() -> None:
    splitter = proto.LineSplitter()
    splitter.feed(b"TRIG,12")
    splitter.reset()
    assert splitter.feed(b"PING\n") == [b"PING"]


# --- replies ------------------------------------------------------------------------------------


def test_result_lines() -> None:
    ok = PartVerdict("A1", "OK", 0.1234, None)
    ng = PartVerdict("A2", "NG", 0.9, "scratch, deep*", 1)
    assert proto.format_result(ok) == "RES,A1,OK,0.123,-"
    assert proto.format_result(ng) == "RES,A2,NG,0.900,scratch__deep_"
    assert proto.format_result(PartVerdict.failed("A3", "camera")) == "RES,A3,NG,nan,FAULT"
    assert proto.format_result(PartVerdict.failed("A4", "late", kind="TIMEOUT")) == "RES,A4,NG,nan,TIMEOUT"
    # fail-safe even for odd verdicts the station should never produce
    assert proto.format_result(PartVerdict("A5", "OK", math.inf, None)) == "RES,A5,NG,nan,FAULT"
    assert proto.format_result(PartVerdict("A6", "NG", math.nan, "dent", fault=None)) == "RES,A6,NG,nan,FAULT"


def test_other_replies() -> None:
    status = StationStatus(StationState.BUSY, "ring", "v3,b")
    assert proto.format_status(status) == "STATUS,BUSY,ring,v3_b"
    assert proto.format_pong() == "PONG"
    assert proto.format_ack("A1") == "ACK,A1"
    assert proto.format_line_ok("gear") == "LINE,gear,OK"
    assert proto.format_error(ErrorCode.BAD_FIELD, "bad, really*\r\n") == "ERR,E02,bad; really___"
    assert len(proto.format_error("E01", "x" * 500)) <= proto.MAX_LINE_BYTES - 3


def test_reply_parser_roundtrip() -> None:
    def back(body: str) -> object:
        return proto.parse_reply(proto.encode_line(body, True)[:-2]).message

    assert back("ACK,A1") == proto.Ack("A1")
    assert back("RES,A1,NG,nan,FAULT") == proto.Result("A1", "NG", math.nan, "FAULT") or math.isnan(
        back("RES,A1,NG,nan,FAULT").score)
    assert back("RES,A1,OK,0.100,-") == proto.Result("A1", "OK", 0.1, None)
    assert back("STATUS,READY,ring,v1") == proto.StatusReply("READY", "ring", "v1")
    assert back("LINE,ring,OK") == proto.LineReply("ring")
    assert back("ERR,E05,not ready") == proto.ErrorReply("E05", "not ready")
    assert back("PONG") == proto.Pong()
    with pytest.raises(ProtocolError):
        proto.parse_reply(b"RES,A1,OK,nan,-")  # an OK without a score is a protocol violation


# --- fuzzing ----------------------------------------------------------------------------------
# Each example carries a batch of frames (min_size) so the module checks >= 10,000 malformed frames
# (6,000 + 3,000 + 1,600) in seconds: hypothesis' per-example overhead dominates single-frame examples.

PRINTABLE = st.binary(max_size=140).map(lambda b: bytes(0x20 + x % 95 for x in b))
ANY_LINE = st.one_of(st.binary(max_size=200), PRINTABLE)
VALID = st.sampled_from([b"TRIG,A1", b"PING", b"STATUS", b"LINE,ring", b"PING*10", b"TRIG,part_07-x"])
MUTATIONS = st.tuples(VALID, st.integers(0, 200), st.binary(min_size=1, max_size=4), st.booleans())


def _mutate(base: bytes, pos: int, data: bytes, insert: bool) -> bytes:
    """Insert ``data`` at ``pos`` or overwrite the bytes there."""
    pos %= len(base) + 1
    return base[:pos] + data + base[pos if insert else pos + len(data):]


def _parse_or_refuse(line: bytes, mode: proto.ChecksumMode | str = "optional") -> None:
    """Any byte string either parses or is refused with E01/E02/E03 and an ERR reply that fits the cap."""
    try:
        message, checksummed = proto.parse_request(line, mode)
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.UNKNOWN_COMMAND, ErrorCode.BAD_FIELD, ErrorCode.CHECKSUM)
        reply = proto.encode_line(proto.format_error(exc.code, exc.text), True)
        assert len(reply) <= proto.MAX_LINE_BYTES + 2 and reply.count(b"\n") == 1
        return
    assert isinstance(message, proto.Trigger | proto.Ping | proto.StatusRequest | proto.LineRequest)
    assert len(line) <= proto.MAX_LINE_BYTES
    if mode == proto.ChecksumMode.REQUIRED:
        assert checksummed


@settings(FUZZ, max_examples=600)
@given(lines=st.lists(ANY_LINE, min_size=10, max_size=12), mode=MODES)
def test_fuzz_parse_request_is_total(lines: list[bytes], mode: proto.ChecksumMode) -> None:
    for line in lines:
        _parse_or_refuse(line, mode)


@settings(FUZZ, max_examples=300)
@given(cases=st.lists(MUTATIONS, min_size=10, max_size=12), mode=MODES)
def test_fuzz_mutated_valid_lines(cases: list[tuple[bytes, int, bytes, bool]], mode: proto.ChecksumMode) -> None:
    """Byte overwrites and insertions into valid lines: parse or clean refusal."""
    for case in cases:
        _parse_or_refuse(_mutate(*case), mode)


def test_single_byte_corruption_of_a_checksummed_line_is_always_caught() -> None:
    line = b"TRIG,P000123*" + b"%02X" % proto.xor_checksum(b"TRIG,P000123")
    for pos in range(len(line)):
        for value in range(256):
            if value == line[pos] or value in b"\r\n":
                continue
            corrupted = line[:pos] + bytes([value]) + line[pos + 1:]
            try:
                message, checksummed = proto.parse_request(corrupted, "required")
            except ProtocolError:
                continue
            # only a case change of a hex digit or of the command keyword may still parse
            assert message in (proto.Trigger("P000123"),) and checksummed, corrupted


@settings(FUZZ, max_examples=200)
@given(stream=st.lists(st.one_of(ANY_LINE.map(lambda b: b + b"\n"), VALID.map(lambda v: v + b"\r\n")),
                       min_size=8, max_size=10),
       cuts=st.lists(st.integers(1, 64), max_size=20))
def test_fuzz_stream_framing(stream: list[bytes], cuts: list[int]) -> None:
    """Arbitrary streams in arbitrary chunks: bounded lines out, every one parsed or refused."""
    data = b"".join(stream)
    splitter = proto.LineSplitter()
    items = feed_in_chunks(data, cuts, splitter)
    for item in items:
        if isinstance(item, proto.Overlong):
            assert item.size > proto.MAX_LINE_BYTES
            continue
        assert item and len(item) <= proto.MAX_LINE_BYTES and b"\n" not in item
        _parse_or_refuse(item)
    assert len(splitter._buf) <= proto.MAX_LINE_BYTES + 1  # memory stays bounded


PART_IDS = st.from_regex(proto.PART_ID_RE, fullmatch=True)
VERDICTS = st.builds(
    PartVerdict,
    part_id=PART_IDS,
    verdict=st.sampled_from(["OK", "NG"]),
    score=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    defect=st.one_of(st.none(), st.text(max_size=200)),
    defect_index=st.integers(0, 10),
)
FAILED = st.builds(PartVerdict.failed, PART_IDS, st.text(max_size=20), st.sampled_from(["FAULT", "TIMEOUT"]))


@settings(FUZZ, max_examples=200)
@given(verdicts=st.lists(st.one_of(VERDICTS, FAILED), min_size=5, max_size=6), checksum=st.booleans())
def test_fuzz_result_lines_parse_back(verdicts: list[PartVerdict], checksum: bool) -> None:
    """Every RES we can emit fits the line cap and parses back to the same part and verdict; NaN is never OK."""
    for verdict in verdicts:
        raw = proto.encode_line(proto.format_result(verdict), checksum)
        assert len(raw) <= proto.MAX_LINE_BYTES + 2
        result, had = proto.parse_reply(raw[:-2], "required" if checksum else "optional")
        assert had == checksum
        assert isinstance(result, proto.Result)
        assert result.part_id == verdict.part_id
        if verdict.fault is not None:
            assert (result.verdict, result.defect) == ("NG", verdict.defect) and math.isnan(result.score)
        else:
            assert result.verdict == verdict.verdict
            assert result.score == pytest.approx(max(-999_999.999, min(999_999.999, verdict.score)), abs=6e-4)
