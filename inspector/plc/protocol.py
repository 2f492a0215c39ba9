"""The ASCII line protocol, pure: framing, checksums, parsing and message building (no I/O).

One message per line, ``CR LF`` terminated (``LF`` alone accepted), comma-separated fields, at most
:data:`MAX_LINE_BYTES` bytes before the terminator. An optional NMEA-style suffix ``*HH`` carries the
XOR of every byte before the ``*`` as two hex digits. See docs/plc.md for the full specification.

Everything here is deterministic and side-effect free so it can be fuzzed: parsers either return a
message or raise :class:`ProtocolError` carrying the ``ERR`` code to answer with.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from typing import Final, NamedTuple

from inspector.plc.port import PartVerdict, StationStatus

MAX_LINE_BYTES: Final = 128
PART_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Same rule as the station config's line names (inspector.config._NAME_RE); kept here so this module stays a leaf.
LINE_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_TEXT_UNSAFE = re.compile(r"[^\x20-\x7e]|\*")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SCORE_LIMIT = 999_999.999  # keeps a RES line short whatever the fused score's units
_SCORE_RE = re.compile(r"-?[0-9]{1,7}(?:\.[0-9]{1,6})?|nan")
_DEFECT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # what sanitize_label produces


class ErrorCode(enum.StrEnum):
    UNKNOWN_COMMAND = "E01"
    BAD_FIELD = "E02"
    CHECKSUM = "E03"
    QUEUE_FULL = "E04"
    NOT_READY = "E05"
    UNKNOWN_LINE = "E06"


class ChecksumMode(enum.StrEnum):
    OPTIONAL = "optional"  # verified when present
    REQUIRED = "required"  # a line without a checksum is refused with E03
    OFF = "off"  # a *HH suffix is stripped unchecked; replies carry none


class ProtocolError(ValueError):
    """A line that cannot be accepted; ``code`` is the ERR code to answer with."""

    def __init__(self, code: ErrorCode, text: str, checksummed: bool = False) -> None:
        self.code = code
        self.text = text
        self.checksummed = checksummed  # the offending line carried a *HH suffix
        super().__init__(f"{code}: {text}")


# --- PLC -> station requests -------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    part_id: str


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class StatusRequest:
    pass


@dataclass(frozen=True)
class LineRequest:
    line: str


Request = Trigger | Ping | StatusRequest | LineRequest


# --- station -> PLC replies (parsed by the PLC simulator) -----------------------------------------


@dataclass(frozen=True)
class Ack:
    part_id: str


@dataclass(frozen=True)
class Result:
    part_id: str
    verdict: str  # OK | NG
    score: float  # NaN for parts that were not inspected
    defect: str | None  # label, FAULT, TIMEOUT, or None for "-"


@dataclass(frozen=True)
class Pong:
    pass


@dataclass(frozen=True)
class StatusReply:
    state: str
    line: str
    model_version: str


@dataclass(frozen=True)
class LineReply:
    line: str


@dataclass(frozen=True)
class ErrorReply:
    code: str
    text: str


Reply = Ack | Result | Pong | StatusReply | LineReply | ErrorReply


class Decoded(NamedTuple):
    """A parsed line and whether it carried a checksum (replies to it then carry one too)."""

    message: Request | Reply
    checksummed: bool


# --- framing ----------------------------------------------------------------------------------


class Overlong(NamedTuple):
    """Marker from :class:`LineSplitter`: a line exceeded the cap (its bytes were discarded)."""

    size: int  # bytes seen before the splitter gave up on the line


class LineSplitter:
    """Splits a byte stream into lines; caps their length (pyserial's ``Packetizer`` buffers without limit).

    ``feed`` returns complete lines (terminator stripped, empty lines skipped) and one :class:`Overlong`
    marker per line longer than ``max_len``; the rest of such a line is discarded up to its ``LF``.
    """

    def __init__(self, max_len: int = MAX_LINE_BYTES) -> None:
        self.max_len = max_len
        self._buf = bytearray()
        self._discarding = False

    def reset(self) -> None:
        """Forget a partial line (after the port was reopened)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | Overlong]:
        out: list[bytes | Overlong] = []
        start = 0
        while start < len(data):
            nl = data.find(b"\n", start)
            chunk = data[start:] if nl < 0 else data[start:nl]
            if self._discarding:
                if nl >= 0:
                    self._discarding = False
            else:
                self._buf += chunk
                if nl >= 0:
                    line = bytes(self._buf[:-1] if self._buf.endswith(b"\r") else self._buf)
                    self._buf.clear()
                    if len(line) > self.max_len:
                        out.append(Overlong(len(line)))
                    elif line:
                        out.append(line)
                elif len(self._buf) > self.max_len + 1:  # +1: a CR may still precede the LF
                    out.append(Overlong(len(self._buf)))
                    self._buf.clear()
                    self._discarding = True
            if nl < 0:
                break
            start = nl + 1
        return out


def xor_checksum(data: bytes) -> int:
    """NMEA-style checksum: XOR of all bytes."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def encode_line(body: str, checksum: bool = False) -> bytes:
    """``body`` -> ``body[*HH]\\r\\n`` as bytes."""
    raw = body.encode("ascii")
    if checksum:
        raw += b"*%02X" % xor_checksum(raw)
    return raw + b"\r\n"


def split_checksum(line: bytes, mode: ChecksumMode | str = ChecksumMode.OPTIONAL) -> tuple[bytes, bool]:
    """Verify and strip a ``*HH`` suffix; returns (body, had_checksum). Raises ProtocolError(E03)."""
    mode = ChecksumMode(mode)
    star = line.rfind(b"*")
    if star < 0:
        if mode is ChecksumMode.REQUIRED:
            raise ProtocolError(ErrorCode.CHECKSUM, "checksum required")
        return line, False
    body, suffix = line[:star], line[star + 1 :]
    well_formed = len(suffix) == 2 and all(b in _HEX for b in suffix)
    if mode is ChecksumMode.OFF:
        return (body, False) if well_formed else (line, False)
    if not well_formed:
        raise ProtocolError(ErrorCode.CHECKSUM, "malformed checksum (2 hex digits expected)", checksummed=True)
    expected = xor_checksum(body)
    if int(suffix, 16) != expected:
        msg = f"checksum mismatch (expected {expected:02X})"
        raise ProtocolError(ErrorCode.CHECKSUM, msg, checksummed=True)
    return body, True


def _fields(line: bytes, mode: ChecksumMode | str) -> tuple[list[str], bool]:
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"line longer than {MAX_LINE_BYTES} bytes")
    body, checksummed = split_checksum(line, mode)
    if any(b < 0x20 or b > 0x7E for b in body):
        raise ProtocolError(ErrorCode.BAD_FIELD, "non-printable or non-ASCII byte in line", checksummed)
    return body.decode("ascii").split(","), checksummed


def parse_request(line: bytes, mode: ChecksumMode | str = ChecksumMode.OPTIONAL) -> Decoded:
    """One PLC line (terminator stripped) -> Decoded(Trigger | Ping | StatusRequest | LineRequest, checksummed)."""
    fields, checksummed = _fields(line, mode)
    command = fields[0].upper()

    def need(count: int, usage: str) -> None:
        if len(fields) != count:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"expected {usage}", checksummed)

    if command == "TRIG":
        need(2, "TRIG,<part_id>")
        if not PART_ID_RE.fullmatch(fields[1]):
            raise ProtocolError(ErrorCode.BAD_FIELD, "part_id must be 1-32 of A-Z a-z 0-9 _ -", checksummed)
        return Decoded(Trigger(fields[1]), checksummed)
    if command == "PING":
        need(1, "PING")
        return Decoded(Ping(), checksummed)
    if command == "STATUS":
        need(1, "STATUS")
        return Decoded(StatusRequest(), checksummed)
    if command == "LINE":
        need(2, "LINE,<line name>")
        if not LINE_NAME_RE.fullmatch(fields[1]):
            raise ProtocolError(ErrorCode.BAD_FIELD, "line name must be 1-64 of A-Z a-z 0-9 _ . -", checksummed)
        return Decoded(LineRequest(fields[1]), checksummed)
    raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {sanitize_text(fields[0], 16)!r}", checksummed)


# --- building replies -------------------------------------------------------------------------


def sanitize_label(text: str | None, max_len: int = 64) -> str:
    """A label safe inside a field (no comma, star or control bytes); ``-`` for empty."""
    if not text:
        return "-"
    return _LABEL_UNSAFE.sub("_", text)[:max_len] or "-"


def sanitize_text(text: str, max_len: int = 80) -> str:
    """Free text for the last field of an ERR line: printable ASCII, no comma (-> ;) or star."""
    return _TEXT_UNSAFE.sub("_", text.replace(",", ";"))[:max_len]


def _fit(prefix: str, tail: str) -> str:
    """Truncate ``tail`` so ``prefix + tail`` plus a ``*HH`` suffix stays within MAX_LINE_BYTES."""
    room = MAX_LINE_BYTES - 3 - len(prefix)
    return prefix + tail[: max(room, 1)]


def format_ack(part_id: str) -> str:
    return f"ACK,{part_id}"


def format_result(verdict: PartVerdict) -> str:
    """``RES,<id>,<OK|NG>,<score>,<defect|->``; anything not cleanly inspected is NG (fail-safe)."""
    score = verdict.score
    inspected = verdict.fault is None and math.isfinite(score) and verdict.defect not in ("FAULT", "TIMEOUT")
    if verdict.verdict == "OK" and inspected:
        return _fit(f"RES,{verdict.part_id},OK,{_score(score)},", "-")
    if not inspected:
        kind = verdict.defect if verdict.defect in ("FAULT", "TIMEOUT") else "FAULT"
        return f"RES,{verdict.part_id},NG,nan,{kind}"
    return _fit(f"RES,{verdict.part_id},NG,{_score(score)},", sanitize_label(verdict.defect))


def _score(score: float) -> str:
    return f"{max(-_SCORE_LIMIT, min(_SCORE_LIMIT, score)):.3f}"


def format_pong() -> str:
    return "PONG"


def format_status(status: StationStatus) -> str:
    line, version = sanitize_label(status.line, 64), sanitize_label(status.model_version, 40)
    return _fit(f"STATUS,{status.state.value},{line},", version)


def format_line_ok(line: str) -> str:
    return f"LINE,{line},OK"


def format_error(code: ErrorCode | str, text: str) -> str:
    return _fit(f"ERR,{ErrorCode(code).value},", sanitize_text(text, MAX_LINE_BYTES) or "-")


# --- parsing replies (PLC side) ---------------------------------------------------------------


def parse_reply(line: bytes, mode: ChecksumMode | str = ChecksumMode.OPTIONAL) -> Decoded:
    """One station line -> Decoded(Ack | Result | Pong | StatusReply | LineReply | ErrorReply, checksummed)."""
    fields, checksummed = _fields(line, mode)
    kind, n = fields[0], len(fields)

    def bad(usage: str) -> ProtocolError:
        return ProtocolError(ErrorCode.BAD_FIELD, f"expected {usage}", checksummed)

    if kind == "ACK":
        if n != 2 or not PART_ID_RE.fullmatch(fields[1]):
            raise bad("ACK,<part_id>")
        return Decoded(Ack(fields[1]), checksummed)
    if kind == "RES":
        if n != 5 or not PART_ID_RE.fullmatch(fields[1]) or fields[2] not in ("OK", "NG"):
            raise bad("RES,<part_id>,<OK|NG>,<score>,<defect>")
        # Strict: float() would also take " 1", "1_0", "inf", "1e9"; the station writes -?d.ddd or nan.
        if not _SCORE_RE.fullmatch(fields[3]):
            raise bad("RES score as a decimal or nan")
        score = float(fields[3])
        if fields[2] == "OK" and not math.isfinite(score):
            raise bad("an OK result with a finite score")
        if not _DEFECT_RE.fullmatch(fields[4]) or (fields[2] == "OK" and fields[4] != "-"):
            raise bad("RES defect as a label (A-Z a-z 0-9 _ . -) or '-', and '-' for OK")
        defect = None if fields[4] == "-" else fields[4]
        return Decoded(Result(fields[1], fields[2], score, defect), checksummed)
    if kind == "PONG" and n == 1:
        return Decoded(Pong(), checksummed)
    if kind == "STATUS" and n == 4 and fields[1] in ("READY", "BUSY", "FAULT"):
        return Decoded(StatusReply(fields[1], fields[2], fields[3]), checksummed)
    if kind == "LINE" and n == 3 and fields[2] == "OK":
        return Decoded(LineReply(fields[1]), checksummed)
    if kind == "ERR" and n >= 3 and re.fullmatch(r"E\d\d", fields[1]):
        return Decoded(ErrorReply(fields[1], ",".join(fields[2:])), checksummed)
    raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unexpected reply {sanitize_text(kind, 16)!r}", checksummed)
