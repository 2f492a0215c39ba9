"""The station loop's life in one value (:class:`Phase`), and the state the PLC hears derived from it."""

from __future__ import annotations

import enum
import threading
from typing import TYPE_CHECKING

from inspector.plc.port import StationState, StationStateError

if TYPE_CHECKING:
    from inspector.station.sinks import AuditSink
    from inspector.station.sources import Camera


class Phase(enum.Enum):
    """Where a loop is in its life."""

    CREATED = "created"
    STARTING = "starting"  # start(): claiming the folder, loading the line, opening log and camera
    RUNNING = "running"  # taking triggers (READY unless the camera or a required log is down)
    CHANGING_OVER = "changing over"  # switching line: new triggers refused, parts in flight finish
    PAUSED = "paused"  # halted on command (OPC UA Stop): triggers refused, parts in flight finish, all else stays
    ENDED = "ended"  # the run ended by itself (max_parts, source exhausted): parts in flight finish
    FAULT = "fault"  # the capture thread failed: parts in flight finish, nothing new is taken
    STOPPING = "stopping"
    STOPPED = "stopped"


CAPTURING = (Phase.RUNNING, Phase.CHANGING_OVER, Phase.PAUSED)  # the capture thread takes (queued) parts
LIVE = (*CAPTURING, Phase.ENDED, Phase.FAULT)  # started and not stopping


class LoopPhase:
    """The phase, why (for CHANGING_OVER / ENDED / FAULT), and the lock that orders phase changes
    against trigger admission (a trigger is taken in one phase, never half-way through a change)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.phase = Phase.CREATED
        self.detail = ""

    def set(self, phase: Phase, detail: str = "") -> None:
        with self.lock:
            self.phase, self.detail = phase, detail

    def enter(self, phase: Phase, detail: str, *from_phases: Phase) -> bool:
        """Move to ``phase`` if now in one of ``from_phases`` (a stop or an end in between wins)."""
        with self.lock:
            if self.phase not in from_phases:
                return False
            self.phase, self.detail = phase, detail
            return True

    def pause(self, detail: str) -> bool:
        """RUNNING -> PAUSED (True); False when paused already; StationStateError in any other phase."""
        return self._move(Phase.RUNNING, Phase.PAUSED, detail, "stop")

    def resume(self) -> bool:
        """PAUSED -> RUNNING (True); False when running already; StationStateError in any other phase."""
        return self._move(Phase.PAUSED, Phase.RUNNING, "", "start")

    def _move(self, source: Phase, target: Phase, detail: str, verb: str) -> bool:
        with self.lock:
            if self.phase is target:
                return False
            if self.phase is not source:
                now = "not started yet" if self.phase is Phase.CREATED else self.phase.value
                msg = f"the station cannot {verb} now: it is {now}{' (' + self.detail + ')' if self.detail else ''}"
                raise StationStateError(msg)
            self.phase, self.detail = target, detail
            return True

    def state(self, camera: Camera, audit: AuditSink | None, log_required: bool) -> tuple[StationState, str]:
        """What the PLC and the GUI hear: READY only while running with a camera and (if required) a log."""
        phase = self.phase
        if phase is Phase.STOPPED:
            return StationState.FAULT, "station stopped"
        if phase in (Phase.CREATED, Phase.STARTING):
            return StationState.BUSY, "starting"
        if phase is Phase.STOPPING:
            return StationState.BUSY, "stopping"
        if phase is Phase.FAULT:
            return StationState.FAULT, self.detail
        if phase in (Phase.CHANGING_OVER, Phase.ENDED, Phase.PAUSED):
            return StationState.BUSY, self.detail
        if not camera.connected:
            return StationState.FAULT, f"{camera.last_error}; next attempt in {camera.retry_in():.1f} s"
        if audit is not None and audit.failed and log_required:
            return StationState.FAULT, f"audit log: {audit.failed}"
        return StationState.READY, ""
