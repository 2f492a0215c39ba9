"""Fuzzing the PLC side beyond test_protocol.py: reply parsing, chunking, verdict integrity, register decoding.

Properties (each example carries a batch of frames, as in test_protocol.py, to keep hypothesis' overhead low):
* ``parse_reply`` is total: any bytes parse or raise ProtocolError (never another exception);
* the splitter is chunking-invariant: a stream fed in any split yields exactly the lines of one big feed;
* no verdict from a frame that was not valid: an ``OK`` is only ever decoded from a well-formed RES line
  with a finite score, and corrupting a checksummed NG result never turns it into OK;
* the Modbus register encoding is fail-safe for every float and verdict, and its decoding is total.
"""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.plc import protocol as proto
from inspector.plc import registers as reg
from inspector.plc.port import PartVerdict
from inspector.plc.protocol import ProtocolError

from .conftest import feed_in_chunks

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODES = st.sampled_from(list(proto.ChecksumMode))
PRINTABLE = st.binary(max_size=140).map(lambda b: bytes(0x20 + x % 95 for x in b))
REPLIES = st.sampled_from([b"ACK,A1", b"RES,A1,OK,0.123,-", b"RES,P-7,NG,3.500,scratch", b"RES,A2,NG,nan,FAULT",
                           b"PONG", b"STATUS,READY,ring,v3", b"LINE,ring,OK", b"ERR,E02,expected TRIG,<part_id>"])
_RES_OK = re.compile(rb"RES,[A-Za-z0-9_-]{1,32},OK,-?[0-9]+(?:\.[0-9]+)?,-")


def _reply_or_refuse(line: bytes, mode: proto.ChecksumMode | str = "optional") -> proto.Decoded | None:
    try:
        decoded = proto.parse_reply(line, mode)
    except ProtocolError as exc:
        assert exc.code in (proto.ErrorCode.UNKNOWN_COMMAND, proto.ErrorCode.BAD_FIELD, proto.ErrorCode.CHECKSUM)
        return None
    message = decoded.message
    assert len(line) <= proto.MAX_LINE_BYTES
    if isinstance(message, proto.Result) and message.verdict == "OK":
        # An OK comes only from a well-formed RES line, and always with a finite score.
        body = proto.split_checksum(line, mode)[0]
        assert _RES_OK.fullmatch(body), line
        assert math.isfinite(message.score)
    if mode == proto.ChecksumMode.REQUIRED:
        assert decoded.checksummed
    return decoded


@settings(FUZZ, max_examples=400)
@given(lines=st.lists(st.one_of(st.binary(max_size=200), PRINTABLE), min_size=10, max_size=12), mode=MODES)
def test_fuzz_parse_reply_is_total(lines: list[bytes], mode: proto.ChecksumMode) -> None:
    for line in lines:
        _reply_or_refuse(line, mode)


def _mutate(base: bytes, pos: int, data: bytes, insert: bool) -> bytes:
    pos %= len(base) + 1
    return base[:pos] + data + base[pos if insert else pos + len(data):]


@settings(FUZZ, max_examples=300)
@given(cases=st.lists(st.tuples(REPLIES, st.integers(0, 200), st.binary(min_size=1, max_size=4), st.booleans(),
                                st.booleans()), min_size=10, max_size=12), mode=MODES)
def test_fuzz_mutated_replies(cases: list[tuple[bytes, int, bytes, bool, bool]], mode: proto.ChecksumMode) -> None:
    """Mutations of valid replies (with or without a checksum): parse or clean refusal, never a bogus OK."""
    for base, pos, data, insert, checksum in cases:
        line = proto.encode_line(base.decode(), checksum)[:-2]
        _reply_or_refuse(_mutate(line, pos, data, insert), mode)


def test_corrupting_a_checksummed_ng_never_yields_ok() -> None:
    """Every single-byte change of a checksummed NG / FAULT result is refused or still NG (XOR catches 1 byte)."""
    for body in (b"RES,P000123,NG,3.500,scratch", b"RES,P000124,NG,nan,FAULT", b"RES,P000125,NG,nan,TIMEOUT"):
        line = body + b"*%02X" % proto.xor_checksum(body)
        for pos in range(len(line)):
            for value in range(256):
                if value == line[pos] or value in b"\r\n":
                    continue
                decoded = _reply_or_refuse(line[:pos] + bytes([value]) + line[pos + 1:], "required")
                if decoded is not None:
                    assert isinstance(decoded.message, proto.Result) and decoded.message.verdict == "NG"


@settings(FUZZ, max_examples=150)
@given(stream=st.lists(st.one_of(st.binary(max_size=200).map(lambda b: b + b"\n"),
                                 REPLIES.map(lambda v: v + b"\r\n"),
                                 st.binary(min_size=129, max_size=400)), min_size=6, max_size=10),
       cuts=st.lists(st.integers(0, 80), max_size=30))
def test_fuzz_splitter_is_chunking_invariant(stream: list[bytes], cuts: list[int]) -> None:
    """Split or merged reads (down to empty and 1-byte reads) give the same lines as one read of everything."""
    data = b"".join(stream)
    whole = proto.LineSplitter().feed(data)
    pieces = feed_in_chunks(data, cuts)
    # Overlong markers may report a different size depending on where the cap was crossed, nothing else differs.
    assert [x if isinstance(x, bytes) else "overlong" for x in pieces] == \
        [x if isinstance(x, bytes) else "overlong" for x in whole]
    for item in pieces:
        if isinstance(item, bytes):
            assert b"\n" not in item and len(item) <= proto.MAX_LINE_BYTES


def test_valid_frame_split_at_every_position_yields_one_trigger() -> None:
    frame = proto.encode_line("TRIG,P-000123", checksum=True)
    for cut in range(len(frame) + 1):
        splitter = proto.LineSplitter()
        lines = splitter.feed(frame[:cut]) + splitter.feed(frame[cut:])
        assert lines == [frame[:-2]]
        assert proto.parse_request(lines[0], "required").message == proto.Trigger("P-000123")


def test_merged_frames_in_one_read_are_all_seen_in_order() -> None:
    frames = [proto.encode_line(f"TRIG,P{i}", checksum=i % 2 == 0) for i in range(50)]
    lines = proto.LineSplitter().feed(b"".join(frames))
    assert [proto.parse_request(x).message for x in lines] == [proto.Trigger(f"P{i}") for i in range(50)]


# --- Modbus register map (pure part) -----------------------------------------------------------

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)


def _verdict(part: int, verdict: str, score: float, defect: str | None, index: int, fault: str | None) -> object:
    try:
        return PartVerdict(str(part), verdict, score, defect, index, 0, fault)
    except ValueError:  # PartVerdict itself refuses an OK that was not inspected
        return None


VERDICTS = st.builds(_verdict, st.integers(0, 10**6), st.sampled_from(["OK", "NG"]), ANY_FLOAT,
                     st.one_of(st.none(), st.sampled_from(["scratch", "FAULT", "TIMEOUT"])), st.integers(-5, 70_000),
                     st.one_of(st.none(), st.just("camera lost"))).filter(lambda v: v is not None)


@settings(FUZZ, max_examples=200)
@given(verdicts=st.lists(VERDICTS, min_size=10, max_size=12), part=st.integers(-2**40, 2**40))
def test_fuzz_result_registers_are_fail_safe(verdicts: list[PartVerdict], part: int) -> None:
    """Every verdict encodes to uint16 registers; OK only for a cleanly inspected part with a finite score."""
    for verdict in verdicts:
        values = reg.result_registers(verdict, part)
        assert all(isinstance(v, int) and 0 <= v <= 0xFFFF for v in values)
        _part, code, score, _defect, error = values
        clean = verdict.fault is None and math.isfinite(verdict.score) and verdict.defect not in ("FAULT", "TIMEOUT")
        if code == reg.VerdictCode.OK:
            assert clean and verdict.verdict == "OK" and error == reg.ResultError.NONE and score != reg.SCORE_NONE
        if not clean:
            assert code == reg.VerdictCode.NG and error in (reg.ResultError.FAULT, reg.ResultError.TIMEOUT)
            assert score == reg.SCORE_NONE


@settings(FUZZ, max_examples=200)
@given(blocks=st.lists(st.lists(st.integers(0, 0xFFFF), min_size=0, max_size=12), min_size=10, max_size=12))
def test_fuzz_result_block_decoding_is_total(blocks: list[list[int]]) -> None:
    """What a PLC reads back decodes or raises ValueError (wrong count); the score is NaN only for 65535."""
    for regs in blocks:
        try:
            block = reg.ResultBlock.from_registers(regs)
        except ValueError:
            assert len(regs) != reg.HR_BLOCK_COUNT
            continue
        assert math.isnan(block.score_value) == (block.score == reg.SCORE_NONE)


@pytest.mark.parametrize("code", ["E04", "E05", "E99", ""])
def test_rejections_are_never_ok(code: str) -> None:
    part, verdict, score, defect, error = reg.rejection_registers(70_000, code)
    assert verdict == reg.VerdictCode.NG and score == reg.SCORE_NONE and error != reg.ResultError.NONE
    assert part == 70_000 & 0xFFFF and defect == 0


@pytest.mark.parametrize("line", [
    b"RES,A,OK,0,",  # found by atheris (fuzz/plc_protocol_fuzz.py): an OK with an empty defect field was accepted
    b"RES,A,OK,0.100,scratch",  # an OK never carries a defect label
    b"RES,A,OK, 1,-", b"RES,A,OK,1_0,-", b"RES,A,OK,1e3,-", b"RES,A,OK,inf,-", b"RES,A,OK,+1,-",
    b"RES,A,NG,0.500,", b"RES,A,NG,0.500,a b", b"RES,A,NG,NaN,FAULT",
])
def test_lenient_result_lines_are_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        proto.parse_reply(line)
