"""The contract between the station loop and what drives it (PLC links, the GUI, tests).

A trigger source calls :meth:`StationPort.submit_trigger`; the station answers through the given
``reply`` callback exactly once per accepted trigger: the verdict, or NG with a FAULT when the part
could not be inspected. Deadlines (TIMEOUT) are enforced by the trigger source, which also drops
anything that arrives after it has answered.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from inspector.errors import InspectorError


class StationState(enum.StrEnum):
    READY = "READY"
    BUSY = "BUSY"
    FAULT = "FAULT"


@dataclass(frozen=True)
class StationStatus:
    state: StationState
    line: str
    model_version: str
    detail: str = ""
    # Not inspecting on purpose: paused (OPC UA Stop) or stopped; OPC 40100 system state Halted. A halted
    # station says BUSY to the PLC and refuses triggers with E05.
    halted: bool = False


@dataclass(frozen=True)
class PartVerdict:
    """What a trigger source hears back for one part."""

    part_id: str
    verdict: str  # "OK" | "NG"
    score: float  # NaN when the part could not be inspected
    defect: str | None  # defect label, or "FAULT" / "TIMEOUT" for parts that were not inspected
    defect_index: int = 0  # 1-based index in the line's defect classes; 0 = none
    seq: int = 0  # station result sequence number
    fault: str | None = None  # why the part was not inspected

    def __post_init__(self) -> None:
        if self.verdict not in ("OK", "NG"):
            msg = f"verdict must be OK or NG, got {self.verdict!r}"
            raise ValueError(msg)
        if self.verdict == "OK" and (self.fault is not None or math.isnan(self.score)):
            msg = "a part that was not inspected can never be OK"
            raise ValueError(msg)

    @classmethod
    def failed(cls, part_id: str, reason: str, kind: str = "FAULT", seq: int = 0) -> PartVerdict:
        """Fail-safe answer: NG, score NaN, defect FAULT or TIMEOUT."""
        return cls(part_id, "NG", float("nan"), kind, 0, seq, reason)


class TriggerRejected(InspectorError):
    """The station cannot take this trigger now; ``code`` is the protocol error (E04 / E05)."""

    def __init__(self, code: str, text: str) -> None:
        self.code = code
        super().__init__(text)


class UnknownLineError(InspectorError):
    """A changeover named a line this station does not have."""


class StationStateError(InspectorError):
    """The station cannot do this in its current state (e.g. resume while it is starting)."""


class StationPort(Protocol):
    """What a PLC link calls on the station (the loop, the GUI's station handle, the simulated station)."""

    def submit_trigger(self, part_id: str, reply: Callable[[PartVerdict], None]) -> None:
        """Queue one part; ``reply`` is called exactly once. Raises TriggerRejected (E04 full, E05 not ready)."""

    def status(self) -> StationStatus: ...

    def changeover(self, line: str, who: str = "plc") -> None:
        """Switch product line (blocks until done); ``who`` goes into the audit event. Raises UnknownLineError."""

    def pause(self, who: str) -> None:
        """Stop taking triggers (OPC UA Stop): parts already accepted finish; line, counters and log stay.
        Triggers are refused (E05) until :meth:`resume`. Raises StationStateError when it cannot pause now."""

    def resume(self, who: str) -> None:
        """Take triggers again after :meth:`pause` (OPC UA Start). Raises StationStateError when it cannot."""

    def line_names(self) -> tuple[str, ...]: ...

    def log_event(self, kind: str, who: str, what: str, old: object = "", new: object = "") -> None:
        """Record an incident in the station's audit log (e.g. a part the link answered TIMEOUT)."""
