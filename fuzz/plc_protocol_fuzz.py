"""Coverage-guided fuzzing of the PLC ASCII protocol with atheris (by hand; not part of the test suite).

    .venv/bin/pip install atheris          # not a project dependency
    .venv/bin/python fuzz/plc_protocol_fuzz.py -atheris_runs=2000000 -max_len=512 fuzz/corpus

Each input is a byte stream cut into chunks (first byte = chunk size): the splitter's lines must stay
bounded and every line must parse or raise ProtocolError, as a request and as a reply, in every
checksum mode; an OK result must only come from a well-formed RES line with a finite score.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys

import atheris

with atheris.instrument_imports():
    from inspector.plc import protocol as proto

_RES_OK = re.compile(rb"RES,[A-Za-z0-9_-]{1,32},OK,-?[0-9]+(?:\.[0-9]+)?,-")
MODES = tuple(proto.ChecksumMode)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    chunk = 1 + data[0] % 64
    stream = data[1:]
    splitter = proto.LineSplitter()
    items: list[bytes | proto.Overlong] = []
    for start in range(0, len(stream), chunk):
        items += splitter.feed(stream[start:start + chunk])
    assert len(splitter._buf) <= proto.MAX_LINE_BYTES + 1
    for item in items:
        if isinstance(item, proto.Overlong):
            assert item.size > proto.MAX_LINE_BYTES
            continue
        assert item and len(item) <= proto.MAX_LINE_BYTES and b"\n" not in item
        for mode in MODES:
            with contextlib.suppress(proto.ProtocolError):
                proto.parse_request(item, mode)
            try:
                message, _ = proto.parse_reply(item, mode)
            except proto.ProtocolError:
                continue
            if isinstance(message, proto.Result) and message.verdict == "OK":
                assert _RES_OK.fullmatch(proto.split_checksum(item, mode)[0]) and math.isfinite(message.score)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
