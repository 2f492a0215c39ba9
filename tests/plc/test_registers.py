"""The Modbus register map encoding, pure."""

from __future__ import annotations

import math
import threading

import pytest

from inspector.plc import registers as reg
from inspector.plc.port import PartVerdict


@pytest.mark.parametrize(("score", "value"), [
    (0.0, 0), (0.1234, 123), (0.1235, 124), (1.0, 1000), (-0.5, 0), (65.534, 65534), (1e9, 65534),
    (math.inf, 65534), (math.nan, 65535),
])
def test_score_register(score: float, value: int) -> None:
    assert reg.score_register(score) == value


def test_result_registers_ok_ng_and_fail_safe() -> None:
    assert reg.result_registers(PartVerdict("7", "OK", 0.2, None), 7) == (7, 1, 200, 0, 0)
    assert reg.result_registers(PartVerdict("7", "NG", 0.9, "dent", 2), 7) == (7, 2, 900, 2, 0)
    assert reg.result_registers(PartVerdict.failed("7", "camera"), 7) == (7, 2, 65535, 0, 10)
    assert reg.result_registers(PartVerdict.failed("7", "late", kind="TIMEOUT"), 7) == (7, 2, 65535, 0, 11)
    assert reg.result_registers(PartVerdict("7", "OK", math.inf, None), 7)[1] == reg.VerdictCode.NG
    assert reg.rejection_registers(70000, "E04") == (70000 & 0xFFFF, 2, 65535, 0, 4)
    assert reg.rejection_registers(1, "E05")[4] == reg.ResultError.NOT_READY


def test_result_block_decoding() -> None:
    block = reg.ResultBlock.from_registers([0, 5, 9, 7, 2, 65535, 0, 10])
    assert (block.seq, block.part, block.error) == (9, 7, 10) and math.isnan(block.score_value)
    with pytest.raises(ValueError, match="expected 8"):
        reg.ResultBlock.from_registers([0, 1])


def test_sequence_wraps_and_heartbeat_wraps() -> None:
    regs = reg.RegisterMap()
    regs._block[2] = 0xFFFF
    regs._block[1] = 0xFFFF
    assert regs.publish((1, 1, 0, 0, 0)) == 0
    assert regs.tick_heartbeat() == 0


def test_a_reader_never_sees_a_new_sequence_with_an_old_result() -> None:
    """Registers 103..107 are written before 102 changes, atomically for any reader."""
    regs = reg.RegisterMap()
    stop = threading.Event()
    torn: list[tuple[int, ...]] = []

    def reader() -> None:
        while not stop.is_set():
            _, _, block = regs.snapshot()
            seq, part = block[2], block[3]
            if seq and part != seq:  # each result n is published for part n
                torn.append(block)

    thread = threading.Thread(target=reader)
    thread.start()
    for n in range(1, 20_001):
        regs.publish((n, 1, n % 1000, 0, 0))
    stop.set()
    thread.join()
    assert not torn
