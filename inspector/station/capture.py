"""The capture stage of the loop (thread ``station-capture``): triggers in, grabbed frames out as jobs.

It takes triggers (the trigger queue, or the free-run clock), grabs and validates a frame, and
queues a :class:`~inspector.station.results.Job` for the inspection thread. It also reconnects a
lost camera, answering the triggers that arrive meanwhile with FAULT. When it ends (stop, run
complete, source exhausted, a bug) it queues every trigger still waiting as a FAULT job, so each
accepted trigger is answered.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from inspector.station.flow import PartFlow
from inspector.station.phase import CAPTURING, LoopPhase, Phase
from inspector.station.results import Job
from inspector.station.sources import BadFrame, Camera, CameraError, Frame, MissingFrame, SourceExhausted
from inspector.station.stats import Tally
from inspector.station.threads import lower_this_thread
from inspector.station.triggers import FreeRunClock, Trigger, TriggerQueue

_logger = logging.getLogger(__name__)

_POLL_S = 0.1


class Capture:
    """The body of the capture thread (:meth:`run`) and what it owns: trigger queue, clock, camera use."""

    def __init__(self, camera: Camera, triggers: TriggerQueue, jobs: queue.Queue[Job], clock: FreeRunClock | None,
                 *, max_parts: int | None, phase: LoopPhase, flow: PartFlow, tally: Tally,
                 stop: threading.Event, inspecting: Callable[[], bool]) -> None:
        self.camera = camera
        self.triggers = triggers
        triggers.on_accept = camera.arm  # a software-triggered camera exposes when the part is accepted
        self.clock = clock
        self.max_parts = max_parts
        self._jobs = jobs
        self._phase = phase
        self._flow = flow
        self._tally = tally
        self._stop = stop
        self._inspecting = inspecting  # False once the inspection thread is gone

    def run(self) -> None:
        lower_this_thread()  # grabbing / rendering yields the CPU to the inspect thread (station/threads.py)
        reason = "station stopped before the part was inspected"
        if self.clock is not None:
            self.clock.reset()
        trig: Trigger | None = None  # the trigger in hand: a crash must answer it too
        try:
            while not self._stop.is_set():
                if self.max_parts is not None and self._flow.produced >= self.max_parts:
                    reason = f"run complete ({self.max_parts} parts)"
                    self._phase.enter(Phase.ENDED, reason, *CAPTURING)
                    break
                if not self.camera.connected and not self.camera.connect():
                    self._serve_while_down()
                    continue
                trig = self._next_trigger()
                ended = self._capture(trig) if trig is not None else None
                trig = None  # queued (or, for a free-run tick without a frame, nothing to answer)
                if ended is not None:
                    reason = ended
                    break
        except Exception:  # a bug here must not leave triggers unanswered
            _logger.exception("capture thread failed")
            reason = "station capture failed (see the station log)"
            self._phase.enter(Phase.FAULT, reason, *CAPTURING)
        finally:
            with self._phase.lock:
                if self._phase.phase in CAPTURING:  # ended some other way: take no more triggers
                    self._phase.phase, self._phase.detail = Phase.FAULT, "station capture ended"
                left = ([trig] if trig is not None else []) + self.triggers.drain()
            for held in left:
                self._queue_job(Job(held, None, reason, time.perf_counter(), time.perf_counter()))
            self._flow.capture_ended()

    def _serve_while_down(self) -> None:
        """Camera down: answer waiting triggers with FAULT, wait for the next reconnect attempt."""
        trig = self.triggers.get(min(max(self.camera.retry_in(), 0.01), _POLL_S))
        if trig is not None:
            now = time.perf_counter()
            self._queue_job(Job(trig, None, self.camera.last_error or "camera not connected", now, now))
        if self.clock is not None:
            self.clock.reset()

    def _next_trigger(self) -> Trigger | None:
        clock = self.clock
        if clock is None or self._phase.phase in (Phase.CHANGING_OVER, Phase.PAUSED):  # no free-run ticks
            if clock is not None:
                clock.reset()
            return self.triggers.get(_POLL_S)
        trig = self.triggers.get(min(max(clock.wait_time(), 0.0), _POLL_S))
        if trig is not None:
            return trig
        if not clock.take():
            return None
        if clock.late:
            self._tally.drop("free-run ticks missed: capture busy", clock.late)
            clock.late = 0
        if self._jobs.full():
            self._tally.drop("free-run frames dropped: inspection busy")
            return None
        with self._phase.lock:  # like a PLC trigger: taken in one phase, never after a pause / changeover began
            if self._phase.phase is not Phase.RUNNING:
                return None
            self._flow.accepted()
        return Trigger(None, "free_run")

    def _capture(self, trig: Trigger) -> str | None:
        """Grab the part's frame and queue its job; returns why the run ended when the source ran out."""
        t0 = time.perf_counter()
        frame: Frame | None = None
        fault: str | None = None
        ended: str | None = None
        ref, hint = "", None
        try:
            frame = self.camera.grab(trig.accepted, trig.armed)
        except CameraError as exc:
            fault = str(exc)
        except BadFrame as exc:  # a MissingFrame too: a triggered camera's frame for this part never came
            kind = "missing frame" if isinstance(exc, MissingFrame) else "bad frame"
            fault, ref, hint = f"{kind}: {exc}", exc.ref, exc.part_id
        except SourceExhausted as exc:
            ended = fault = str(exc)
            self._phase.enter(Phase.ENDED, ended, *CAPTURING)
        if fault is not None and trig.kind == "free_run" and not fault.startswith(("bad frame", "missing frame")):
            self._flow.finished()  # no part behind a free-run tick without a frame: nothing to answer
            return ended
        self._queue_job(Job(trig, frame, fault, t0, time.perf_counter(), ref=ref, part_hint=hint))
        return ended

    def _queue_job(self, job: Job) -> None:
        # Blocking: capture is the only producer, so a full queue is back-pressure (then E04).
        while True:
            try:
                self._jobs.put(job, timeout=_POLL_S)
                break
            except queue.Full:
                if not self._inspecting():
                    _logger.error("inspection thread is gone; part %s cannot be inspected", job.trigger.part_id)
                    return
        self._flow.queued()
