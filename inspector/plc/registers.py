"""The Modbus RTU register map and its encoding, pure (no pymodbus, no I/O).

Addresses are *protocol* addresses, exactly what a Modbus client puts on the wire
(``read_holding_registers(100, count=8)``); PLC tools that number holding registers from 40001
show register 100 as 40101. See docs/plc.md for the handshake.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from inspector.plc.port import PartVerdict, StationState

COIL_TRIGGER: Final = 0  # PLC sets it after writing the part id; the station clears it once it took the trigger
HR_PART_ID: Final = 0  # part id (uint16) written by the PLC
HR_STATUS: Final = 100  # 0 ready, 1 busy, 2 fault
HR_HEARTBEAT: Final = 101  # +1 every heartbeat period while the station is alive (wraps at 65535)
HR_RESULT_SEQ: Final = 102  # +1 per published result (wraps); changes last
HR_RESULT_PART: Final = 103  # part id of that result
HR_VERDICT: Final = 104  # 1 OK, 2 NG
HR_SCORE: Final = 105  # score x 1000 clamped to 0..65534; 65535 = no score (part not inspected)
HR_DEFECT: Final = 106  # defect class index, 1-based; 0 none
HR_ERROR: Final = 107  # ResultError; 0 none
HR_BLOCK_START: Final = HR_STATUS
HR_BLOCK_COUNT: Final = HR_ERROR - HR_STATUS + 1
SCORE_NONE: Final = 0xFFFF


class StatusCode(enum.IntEnum):
    READY = 0
    BUSY = 1
    FAULT = 2


class VerdictCode(enum.IntEnum):
    NONE = 0  # no result published yet
    OK = 1
    NG = 2


class ResultError(enum.IntEnum):
    """Register 107. 4 and 5 mirror the ASCII E04 / E05; every non-zero code comes with verdict NG."""

    NONE = 0
    QUEUE_FULL = 4  # trigger refused: inspection queue full
    NOT_READY = 5  # trigger refused: station not ready (fault, changeover, stopping)
    FAULT = 10  # part could not be inspected (camera, model error)
    TIMEOUT = 11  # no verdict within result_timeout_ms


STATUS_CODES: Final = {StationState.READY: StatusCode.READY, StationState.BUSY: StatusCode.BUSY,
                       StationState.FAULT: StatusCode.FAULT}


def score_register(score: float) -> int:
    """Score x 1000 as uint16: NaN -> 65535 (no score), otherwise rounded and clamped to 0..65534."""
    if math.isnan(score):
        return SCORE_NONE
    if not math.isfinite(score):
        return SCORE_NONE - 1
    # Clamp before scaling: score * 1000 overflows to inf for huge scores and round(inf) raises.
    return max(0, min(SCORE_NONE - 1, round(max(-1.0, min(score, 100.0)) * 1000)))


def result_registers(verdict: PartVerdict, part_number: int) -> tuple[int, int, int, int, int]:
    """Registers 103..107 for a verdict; anything not cleanly inspected is NG with an error code (fail-safe)."""
    part = part_number & 0xFFFF
    inspected = verdict.fault is None and math.isfinite(verdict.score) and verdict.defect not in ("FAULT", "TIMEOUT")
    if not inspected:
        error = ResultError.TIMEOUT if verdict.defect == "TIMEOUT" else ResultError.FAULT
        return part, VerdictCode.NG, SCORE_NONE, 0, error
    code = VerdictCode.OK if verdict.verdict == "OK" else VerdictCode.NG
    return part, code, score_register(verdict.score), max(0, min(0xFFFF, verdict.defect_index)), ResultError.NONE


def rejection_registers(part_number: int, code: str) -> tuple[int, int, int, int, int]:
    """Registers 103..107 for a trigger the station refused (ASCII would answer ERR,E04 / ERR,E05)."""
    error = ResultError.QUEUE_FULL if code == "E04" else ResultError.NOT_READY
    return part_number & 0xFFFF, VerdictCode.NG, SCORE_NONE, 0, error


@dataclass(frozen=True)
class ResultBlock:
    """Registers 100..107 as read by a PLC (used by the simulator and tests)."""

    status: int
    heartbeat: int
    seq: int
    part: int
    verdict: int
    score: int
    defect: int
    error: int

    @classmethod
    def from_registers(cls, regs: Sequence[int]) -> ResultBlock:
        if len(regs) != HR_BLOCK_COUNT:
            msg = f"expected {HR_BLOCK_COUNT} registers (100..107), got {len(regs)}"
            raise ValueError(msg)
        return cls(*regs)

    @property
    def score_value(self) -> float:
        return math.nan if self.score == SCORE_NONE else self.score / 1000


class RegisterMap:
    """Thread-safe image of the station-owned registers; the transport copies it out on every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.trigger = False  # coil 0
        self.part_id = 0  # register 0
        self._block = [0] * HR_BLOCK_COUNT  # registers 100..107

    def snapshot(self) -> tuple[bool, int, tuple[int, ...]]:
        """(coil 0, register 0, registers 100..107) in one consistent read."""
        with self._lock:
            return self.trigger, self.part_id, tuple(self._block)

    def plc_wrote_part_id(self, value: int) -> None:
        with self._lock:
            self.part_id = value & 0xFFFF

    def plc_set_trigger(self) -> int:
        """The PLC set coil 0: returns the part id it wrote before."""
        with self._lock:
            self.trigger = True
            return self.part_id

    def clear_trigger(self) -> None:
        with self._lock:
            self.trigger = False

    def publish(self, values: tuple[int, int, int, int, int]) -> int:
        """Write 103..107, then bump 102 (in this order, under one lock); returns the new sequence number."""
        with self._lock:
            self._block[HR_RESULT_PART - HR_BLOCK_START:] = [int(v) & 0xFFFF for v in values]
            seq = (self._block[HR_RESULT_SEQ - HR_BLOCK_START] + 1) & 0xFFFF
            self._block[HR_RESULT_SEQ - HR_BLOCK_START] = seq
            return seq

    def set_status(self, code: int) -> None:
        with self._lock:
            self._block[HR_STATUS - HR_BLOCK_START] = int(code)

    def tick_heartbeat(self) -> int:
        with self._lock:
            value = (self._block[HR_HEARTBEAT - HR_BLOCK_START] + 1) & 0xFFFF
            self._block[HR_HEARTBEAT - HR_BLOCK_START] = value
            return value
