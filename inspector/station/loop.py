"""The inspection loop: trigger -> capture -> inspect -> decide -> publish, joined by bounded queues.

Threads (each owns its stage; only queues connect them):

* ``station-capture`` takes triggers (the trigger queue, or the free-run clock), grabs and validates
  a frame, and queues a job. It also reconnects a lost camera.
* ``station-inspect`` runs the engine, decides, numbers the result (``seq``) and publishes it:
  the PLC / API reply, then every sink. It only enqueues, so no sink can slow it down.
* ``sink-reply`` calls reply callbacks (never dropped: each accepted trigger gets exactly one).
* ``sink-audit`` writes the HDF5 log; after each flush it passes the results to the observers,
  so what the dashboard or GUI shows is already in the log (see inspector.audit.h5log).
* ``sink-<name>`` one per extra sink and observer.

States (:class:`StationState`): READY accepts triggers; BUSY while starting, changing over or
stopping, and after the run is complete; FAULT while the camera is lost or (with
``log.required``) the audit log cannot write. Triggers are refused with E05 unless READY and with
E04 when the trigger queue is full. A part that cannot be inspected (no frame, bad frame, engine
error, station stopping) is answered NG with defect FAULT and logged: never OK.

Drops are explicit and counted (:meth:`StationLoop.stats`): free-run frames the engine cannot
keep up with, records the log queue could not hold, display updates of slow observers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector import __version__
from inspector.audit.h5log import AuditEvent, AuditLogError, AuditWriter, to_text
from inspector.config import StationConfig
from inspector.decision.result import InspectionResult
from inspector.engine import Inspector
from inspector.errors import InspectorError
from inspector.plc.port import PartVerdict, StationState, StationStatus, TriggerRejected, UnknownLineError
from inspector.station.engines import EngineCache, embedding_dim
from inspector.station.sinks import (
    AuditSink,
    CallbackSink,
    Policy,
    ReplySink,
    Sink,
    SinkRunner,
    StationResult,
)
from inspector.station.sources import (
    BadFrame,
    Camera,
    CameraError,
    Frame,
    FrameSource,
    SourceExhausted,
    create_source,
)
from inspector.station.standby import StationLock, claim_station, remember_line, resumable_line
from inspector.station.stats import CameraStats, LogStats, LoopStats, Tally
from inspector.station.triggers import FreeRunClock, FutureReply, Trigger, TriggerKind, TriggerQueue, check_part_id

if TYPE_CHECKING:
    from inspector.training.deploy import DeploymentWatcher

_logger = logging.getLogger(__name__)

_POLL_S = 0.1
CHANGEOVER_DRAIN_S = 30.0
MODEL_POLL_S = 1.0  # how often the registry's deployed.json is checked for a promotion / rollback


@dataclass
class _Job:
    trigger: Trigger
    frame: Frame | None
    fault: str | None
    capture_start: float  # perf_counter seconds
    captured: float
    published: bool = False
    ref: str = ""  # frame reference when no frame could be used (bad frame)
    part_hint: str | None = None


class StationLoop:
    """A running station; implements :class:`inspector.plc.port.StationPort`.

    ``source`` replaces the camera of the config (tests, tools); ``engines`` shares fitted lines
    with other code; ``log_dir`` overrides ``log.folder`` and ``model_dir`` the config's model
    registry; ``max_parts`` ends the run after that many parts (``inspector run --frames``).
    ``follow_models``: run each line's deployed trained version and follow promotions.
    ``resume_line`` (with no ``line``): start on the line the last station on this log folder was
    running (``inspector run`` after a restart or a standby takeover), else the config's first line.
    """

    def __init__(
        self,
        station: StationConfig,
        *,
        line: str | None = None,
        source: FrameSource | None = None,
        engines: EngineCache | None = None,
        log_dir: Path | None = None,
        log: bool | None = None,
        trigger_mode: TriggerKind | None = None,
        rate_hz: float | None = None,
        max_parts: int | None = None,
        max_batch: int = 1,
        inspect_queue: int = 2,
        follow_models: bool = True,
        model_dir: Path | None = None,
        station_lock: StationLock | None = None,
        resume_line: bool = False,
    ) -> None:
        self.station = station
        self.log_enabled = station.log.enabled if log is None else log
        self.log_folder = Path(log_dir) if log_dir is not None else station.resolve(station.log.folder)
        if line is None and resume_line and self.log_enabled:
            line = resumable_line(station, self.log_folder)
        try:
            self._line = station.line(line).name
        except KeyError:
            names = ", ".join(x.name for x in station.lines)
            msg = f"unknown line {line!r}; this station has: {names}"
            raise UnknownLineError(msg) from None
        self.trigger_mode: TriggerKind = trigger_mode or station.trigger.mode
        self.max_parts = max_parts
        self.max_batch = max(1, max_batch)
        self.engines = engines or EngineCache(station)
        self.camera = Camera(source or create_source(station.camera, station.resolve), station.camera,
                             listener=self._camera_event)
        self.tally = Tally()
        self._triggers = TriggerQueue(station.trigger.queue_size)
        self._jobs: queue.Queue[_Job] = queue.Queue(maxsize=max(1, inspect_queue))
        self._clock = FreeRunClock(rate_hz or station.trigger.rate_hz) if self.trigger_mode == "free_run" else None
        reply_room = station.trigger.queue_size + inspect_queue + self.max_batch + 8
        self._reply = SinkRunner(ReplySink(), queue_size=reply_room, policy="block")
        self._sinks: list[SinkRunner] = []
        self._observers: list[SinkRunner] = []
        self._audit: AuditSink | None = None
        self._audit_runner: SinkRunner | None = None
        self._inspector: Inspector | None = None
        self._defect_classes: tuple[str, ...] = ()
        self._engine_lock = threading.Lock()
        self._changeover_lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._cond = threading.Condition()
        self._stop_evt = threading.Event()
        self._capture_exited = threading.Event()
        self._inflight = 0
        self._produced = 0
        self._published = 0
        self._seq = 0
        self._soft_ids = 0
        self._accepting = False
        self._started = self._stopping = self._stopped = False
        self._busy_reason: str | None = None
        self._ended: str | None = None  # why the run ended by itself (source exhausted, max_parts)
        self._fatal: str | None = None
        self._t_start = time.monotonic()
        self._threads: list[threading.Thread] = []
        self.follow_models = follow_models
        self.model_dir = Path(model_dir) if model_dir is not None else station.resolve(station.model_dir)
        self._watcher: DeploymentWatcher | None = None
        # The log folder's station lock (one station per folder; a warm standby waits on it). Taken at
        # start() when logging is on, unless the caller already holds it (``inspector run`` takes it
        # before loading anything; a standby after its wait). Released at stop(), after the log closed.
        self.station_lock = station_lock

    # ================================================================== lifecycle
    def start(self) -> StationLoop:
        """Load the line (blocking: seconds), open the log and the camera, start the threads."""
        if self._started:
            msg = "station loop already started"
            raise RuntimeError(msg)
        if self.log_enabled and (self.station_lock is None or not self.station_lock.held):
            self.station_lock = claim_station(self.log_folder)  # before the slow line load: refuse early
        try:
            inspector = self.engines.get(self._line)
        except BaseException:
            self._release_station()
            raise
        self._install(inspector)
        try:
            if self.log_enabled:
                try:
                    self._open_log(inspector)
                except AuditLogError as exc:
                    if self.station.log.required:
                        raise
                    _logger.error("running WITHOUT the audit log (log.required is false): %s", exc)
            if self.log_enabled:
                remember_line(self.log_folder, self._line)
            self._follow_models(inspector)
            if not self.camera.connect():
                _logger.warning("camera not available at start: %s (retrying)", self.camera.last_error)
            self._reply.start()
            for runner in self._sinks + self._observers:
                runner.start()
            self._threads = [threading.Thread(target=self._inspect_loop, name="station-inspect", daemon=True),
                             threading.Thread(target=self._capture_loop, name="station-capture", daemon=True)]
            self._t_start = time.monotonic()
            with self._submit_lock:
                self._accepting = True
                self._started = True
            for t in self._threads:
                t.start()
        except BaseException:
            self._started = True
            self.stop()
            raise
        _logger.info("station %s running line %s (%s trigger)", self.station.station, self._line, self.trigger_mode)
        return self

    def _open_log(self, inspector: Inspector) -> None:
        spec = self.station.log
        writer = AuditWriter(self.log_folder, spec, station=self.station.station,
                             embedding_dim=embedding_dim(inspector), software=f"inspector {__version__}")
        self._seq = writer.last_seq
        self._audit = AuditSink(writer, spec, on_written=self._on_written, inbox_folder=self.log_folder)
        self._audit_runner = SinkRunner(self._audit, spec.queue_size, "drop_newest", max_batch=64,
                                        on_drop=self._on_audit_drop).start()
        for path in writer.recovered:
            self.log_event("log_recovered", "station", f"{path.name} was left open by a crashed run; sealed")
        ident = inspector.backbone.identity
        self.log_event("station_start", "station", f"station {self.station.station} started", "",
                       {"line": self._line, "config": str(self.station.source or ""), "model": ident.label(),
                        "weights_sha256": ident.sha256 or "", "config_hash": inspector.config_hash,
                        "trigger": self.trigger_mode, "camera": self.camera.label})

    def stop(self, timeout: float = 30.0) -> None:
        """Stop cleanly: answer or inspect every queued part, drain every sink, close the log."""
        with self._submit_lock:
            if not self._started or self._stopping:
                return
            self._stopping = True
            self._accepting = False
        self._stop_evt.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.ident is None:  # start() failed before the threads ran
                continue
            t.join(max(0.1, deadline - time.monotonic()))
            if t.is_alive():
                _logger.error("%s did not stop within %.0f s", t.name, timeout)
        self._capture_exited.set()
        if self._watcher is not None:
            self._watcher.stop()
        self._reply.stop(max(0.1, deadline - time.monotonic()))
        for runner in self._sinks:
            runner.stop(max(0.1, deadline - time.monotonic()))
        if self._audit_runner is not None:
            tally = self.tally
            self.log_event("station_stop", "station", f"station {self.station.station} stopped", "",
                           {"parts": tally.parts, "ok": tally.ok, "ng": tally.ng, "faults": tally.faults,
                            "drops": dict(tally.drops)})
            self._audit_runner.stop(max(0.1, deadline - time.monotonic()))
        for runner in self._observers:
            runner.stop(max(0.1, deadline - time.monotonic()))
        self.camera.close()
        self._release_station()
        self._stopped = True
        _logger.info("station stopped after %d parts", self.tally.parts)

    def _release_station(self) -> None:
        if self.station_lock is not None:
            self.station_lock.release()  # a waiting standby takes over from here

    def __enter__(self) -> StationLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def done(self) -> bool:
        """True once the run ended by itself (max_parts, source end) and every part is published."""
        with self._cond:
            return self._capture_exited.is_set() and self._inflight == 0 and self._published >= self._produced

    def wait_done(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not (self._capture_exited.is_set() and self._inflight == 0 and self._published >= self._produced):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(_POLL_S if left is None else min(left, _POLL_S))
        return True

    def wait_published(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` parts are published (logged, or past the log); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._published < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, _POLL_S))
        return True

    # ================================================================== sinks
    def add_sink(self, sink: Sink | Callable[[StationResult], None], *, name: str | None = None,
                 queue_size: int = 64, policy: Policy = "drop_oldest") -> SinkRunner:
        """Attach a sink fed with every result as soon as it is decided (before the log)."""
        runner = self._runner(sink, name, queue_size, policy)
        self._sinks.append(runner)
        return runner

    def add_observer(self, observer: Sink | Callable[[StationResult], None], *, name: str | None = None,
                     queue_size: int = 16, policy: Policy = "drop_oldest") -> SinkRunner:
        """Attach an observer (display): fed with each result once it is published to the log."""
        runner = self._runner(observer, name, queue_size, policy)
        self._observers.append(runner)
        return runner

    def _runner(self, sink: Sink | Callable[[StationResult], None], name: str | None, queue_size: int,
                policy: Policy) -> SinkRunner:
        if not isinstance(sink, Sink):
            sink = CallbackSink(sink, name or getattr(sink, "__name__", "observer"))
        elif name:
            sink.name = name
        runner = SinkRunner(sink, queue_size, policy, on_drop=lambda _item: self.tally.drop(f"sink {sink.name}"))
        if self._started and not self._stopping:
            runner.start()
        return runner

    def log_event(self, kind: str, who: str, what: str, old: object = "", new: object = "") -> None:
        """Record a change or incident in the audit log (config, threshold, model, line, camera)."""
        _logger.info("event %s by %s: %s", kind, who, what)
        if self._audit_runner is not None:
            event = AuditEvent(kind, who, what, to_text(old), to_text(new), time.time_ns())
            self._audit_runner.put(event, force=True, timeout=0.5)

    # ================================================================== StationPort
    def line_names(self) -> tuple[str, ...]:
        return self.engines.line_names()

    @property
    def line(self) -> str:
        return self._line

    @property
    def inspector(self) -> Inspector:
        """The current line's engine (threshold changes and adapter swaps go through it)."""
        if self._inspector is None:
            msg = "station loop not started"
            raise RuntimeError(msg)
        return self._inspector

    def status(self) -> StationStatus:
        state, detail = self._state()
        version = self._inspector.model_version if self._inspector is not None else "base"
        return StationStatus(state, self._line, version, detail)

    def submit_trigger(self, part_id: str, reply: Callable[[PartVerdict], None]) -> None:
        """Queue one part (PLC link); ``reply`` is called exactly once. Raises TriggerRejected E04 / E05."""
        self._submit(check_part_id(part_id), reply, "plc")

    def trigger(self, part_id: str | None = None) -> Future[PartVerdict]:
        """Software trigger (GUI button, API, tests): the verdict arrives in the returned Future."""
        if part_id is None:
            with self._submit_lock:
                self._soft_ids += 1
                part_id = f"S{self._soft_ids:06d}"
        reply = FutureReply()
        self._submit(check_part_id(part_id), reply, "software")
        return reply.future

    def _submit(self, part_id: str, reply: Callable[[PartVerdict], None], kind: TriggerKind) -> None:
        with self._submit_lock:
            state, detail = self._state()
            if state is not StationState.READY or not self._accepting:
                self.tally.reject("E05")
                msg = f"station not ready ({state.value}): {detail or 'not accepting triggers'}"
                raise TriggerRejected("E05", msg)
            with self._cond:
                self._inflight += 1
            try:
                self._triggers.submit(Trigger(part_id, kind, reply))
            except TriggerRejected:
                self.tally.reject("E04")
                self._finish_one()
                raise

    def changeover(self, line: str, who: str = "station") -> None:
        """Switch product line without a restart; blocks until done. Raises UnknownLineError.

        New triggers are refused (E05, state BUSY) meanwhile; parts already triggered finish on the
        old line. A line used before is instant; a new one is fitted once (its backbone is shared
        when already loaded).
        """
        if line not in self.line_names():
            msg = f"unknown line {line!r}; this station has: {', '.join(self.line_names())}"
            raise UnknownLineError(msg)
        with self._changeover_lock:
            old = self._inspector
            if line == self._line and old is not None:
                return
            self._busy_reason = f"changeover to {line}"
            try:
                inspector = self.engines.get(line)
                with self._cond:
                    if not self._cond.wait_for(lambda: self._inflight == 0, CHANGEOVER_DRAIN_S):
                        msg = (f"changeover to {line} abandoned: {self._inflight} part(s) still in flight after "
                               f"{CHANGEOVER_DRAIN_S:.0f} s; the station stays on line {self._line}")
                        raise InspectorError(msg)
                self._install(inspector)
                self._line = line
                if self.log_enabled:
                    remember_line(self.log_folder, line)
            finally:
                self._busy_reason = None
            self._follow_models(inspector)
        ident = inspector.backbone.identity
        self.log_event("changeover", who, f"line {old.line.name if old else '-'} -> {line}",
                       {"line": old.line.name, "config_hash": old.config_hash} if old else "",
                       {"line": line, "config_hash": inspector.config_hash, "model": ident.label()})

    def _follow_models(self, inspector: Inspector) -> None:
        """Run the line's deployed trained version and follow promotions / rollbacks made elsewhere
        (``inspector models``, the GUI, ``inspector train``): swapped between two frames, logged.

        A damaged or foreign version is logged as ``model_error`` and the line keeps its current heads.
        """
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if not self.follow_models:
            return
        from inspector.training.deploy import DeploymentWatcher
        from inspector.training.registry import ModelRegistry

        line = inspector.line.name
        registry = ModelRegistry(self.model_dir, line)

        def swapped(old: str, new: str) -> None:
            who, why = "registry", ""
            try:  # who deployed it, from the registry's history
                last = registry.deployment()["history"][-1]
                if str(last.get("version")) == new:
                    who = str(last.get("who") or who)
                    why = f" ({last.get('action', 'deploy')}{': ' + last['reason'] if last.get('reason') else ''})"
            except Exception:  # the swap happened; the name is a courtesy
                pass
            self.log_event("model_swap", who, f"line {line}: model {old} -> {new}{why}", old, new)

        def failed(exc: Exception) -> None:
            self.log_event("model_error", "registry",
                           f"line {line}: deployed model not applied, still running {inspector.model_version}: "
                           f"{exc}"[:500])

        watcher = DeploymentWatcher(inspector, registry, interval_s=MODEL_POLL_S, on_swap=swapped, on_error=failed)
        watcher.check()  # the deployed version before the first frame
        self._watcher = watcher.start()

    def _install(self, inspector: Inspector) -> None:
        classes = list(inspector.line.prompts.defects)
        classes += [n for n in inspector.defect_names if n not in classes]
        with self._engine_lock:
            self._inspector = inspector
            self._defect_classes = tuple(classes)

    def _state(self) -> tuple[StationState, str]:
        if self._stopped:
            return StationState.FAULT, "station stopped"
        if not self._started:
            return StationState.BUSY, "starting"
        if self._stopping:
            return StationState.BUSY, "stopping"
        if self._fatal:
            return StationState.FAULT, self._fatal
        if self._busy_reason:
            return StationState.BUSY, self._busy_reason
        if self._ended:
            return StationState.BUSY, self._ended
        if not self.camera.connected:
            return StationState.FAULT, f"{self.camera.last_error}; next attempt in {self.camera.retry_in():.1f} s"
        audit = self._audit
        if audit is not None and audit.failed and self.station.log.required:
            return StationState.FAULT, f"audit log: {audit.failed}"
        return StationState.READY, ""

    # ================================================================== capture thread
    def _capture_loop(self) -> None:
        reason = "station stopped before the part was inspected"
        if self._clock is not None:
            self._clock.reset()
        try:
            while not self._stop_evt.is_set():
                if self.max_parts is not None and self._produced >= self.max_parts:
                    self._ended = reason = f"run complete ({self.max_parts} parts)"
                    break
                if not self.camera.connected and not self.camera.connect():
                    self._serve_while_down()
                    continue
                trig = self._next_trigger()
                if trig is not None:
                    self._capture(trig)
                if self._ended:
                    reason = self._ended
                    break
        except Exception:  # a bug here must not leave triggers unanswered
            _logger.exception("capture thread failed")
            self._fatal = reason = "station capture failed (see the station log)"
        finally:
            with self._submit_lock:
                self._accepting = False
                left = self._triggers.drain()
            for trig in left:
                self._queue_job(_Job(trig, None, reason, time.perf_counter(), time.perf_counter()))
            self._capture_exited.set()
            with self._cond:
                self._cond.notify_all()

    def _serve_while_down(self) -> None:
        """Camera down: answer waiting triggers with FAULT, wait for the next reconnect attempt."""
        trig = self._triggers.get(min(max(self.camera.retry_in(), 0.01), _POLL_S))
        if trig is not None:
            now = time.perf_counter()
            self._queue_job(_Job(trig, None, self.camera.last_error or "camera not connected", now, now))
        if self._clock is not None:
            self._clock.reset()

    def _next_trigger(self) -> Trigger | None:
        clock = self._clock
        if clock is None or self._busy_reason:
            if clock is not None:
                clock.reset()
            return self._triggers.get(_POLL_S)
        trig = self._triggers.get(min(max(clock.wait_time(), 0.0), _POLL_S))
        if trig is not None:
            return trig
        if not clock.take():
            return None
        if clock.late:
            self.tally.drop("free-run ticks missed: capture busy", clock.late)
            clock.late = 0
        if self._jobs.full():
            self.tally.drop("free-run frames dropped: inspection busy")
            return None
        with self._cond:
            self._inflight += 1
        return Trigger(None, "free_run")

    def _capture(self, trig: Trigger) -> None:
        t0 = time.perf_counter()
        frame: Frame | None = None
        fault: str | None = None
        ref, hint = "", None
        try:
            frame = self.camera.grab()
        except CameraError as exc:
            fault = str(exc)
        except BadFrame as exc:
            fault, ref, hint = f"bad frame: {exc}", exc.ref, exc.part_id
        except SourceExhausted as exc:
            self._ended = str(exc)
            fault = str(exc)
        if fault is not None and trig.kind == "free_run" and not fault.startswith("bad frame"):
            self._finish_one()  # no part behind a free-run tick without a frame: nothing to answer
            return
        self._queue_job(_Job(trig, frame, fault, t0, time.perf_counter(), ref=ref, part_hint=hint))

    def _queue_job(self, job: _Job) -> None:
        # Blocking: capture is the only producer, so a full queue is back-pressure (then E04).
        while True:
            try:
                self._jobs.put(job, timeout=_POLL_S)
                break
            except queue.Full:
                if not self._threads[0].is_alive():
                    _logger.error("inspection thread is gone; part %s cannot be inspected", job.trigger.part_id)
                    return
        with self._cond:
            self._produced += 1

    # ================================================================== inspect thread
    def _inspect_loop(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_POLL_S)
            except queue.Empty:
                if self._capture_exited.is_set() and self._jobs.empty():
                    return
                continue
            batch = [job]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            try:
                self._process(batch)
            except Exception:  # never leave a part unanswered
                _logger.exception("inspection thread error")
                for j in batch:
                    if not j.published:
                        self._publish(j, None, "station error (see the station log)", None, self._inspector)

    def _process(self, batch: list[_Job]) -> None:
        with self._engine_lock:
            inspector = self._inspector
        good = [j for j in batch if j.fault is None and j.frame is not None]
        results: dict[int, InspectionResult] = {}
        error: str | None = None
        t0 = time.perf_counter()
        if good and inspector is not None:
            try:
                out = inspector.inspect_batch([j.frame.image for j in good])  # type: ignore[union-attr]
                results = {id(j): r for j, r in zip(good, out, strict=True)}
            except Exception as exc:
                _logger.exception("inspection failed")
                error = f"inspection failed: {type(exc).__name__}: {exc}"
        for job in batch:
            result = results.get(id(job))
            fault = job.fault or (error if result is None else None)
            self._publish(job, result, fault, t0, inspector)

    def _publish(self, job: _Job, result: InspectionResult | None, fault: str | None, t_inspect: float | None,
                 inspector: Inspector | None) -> None:
        """Number, answer and hand out one part. Exactly once per job, whatever fails."""
        if job.published:
            return
        job.published = True
        self._seq += 1
        try:
            verdict, sr = self._build(job, self._seq, result, fault, t_inspect, inspector)
        except Exception:
            _logger.exception("building the result of part %s failed", job.trigger.part_id)
            verdict, sr = self._build(job, self._seq, None, "station error (see the station log)", None, inspector)
        if job.trigger.reply is not None:
            self._reply.put((job.trigger.reply, verdict))
        try:
            self.tally.count(verdict.verdict, verdict.fault is not None, verdict.defect, sr.seq, sr.timings_ms)
            for runner in self._sinks:
                runner.put(sr)
            if self._audit_runner is not None:
                self._audit_runner.put(sr)
            else:
                self._to_observers([sr])
        except Exception:
            _logger.exception("handing part %s to the sinks failed", sr.part_id)
        finally:
            self._finish_one()

    def _build(self, job: _Job, seq: int, result: InspectionResult | None, fault: str | None,
               t_inspect: float | None, inspector: Inspector | None) -> tuple[PartVerdict, StationResult]:
        trig, frame = job.trigger, job.frame
        timings: dict[str, float] = {"trigger_queue": (job.capture_start - trig.accepted) * 1000.0}
        if frame is not None:
            timings["capture"] = (job.captured - job.capture_start) * 1000.0
        if t_inspect is not None and result is not None:
            timings["inspect_queue"] = (t_inspect - job.captured) * 1000.0
            for stage, ms in result.timings_ms.items():
                timings["inspect" if stage == "total" else stage] = ms
        t_decide = time.perf_counter()
        part_id = trig.part_id or (frame.part_id if frame is not None else job.part_hint) or f"F{seq:08d}"
        if result is None:
            verdict = PartVerdict.failed(part_id, fault or "not inspected", "FAULT", seq)
        else:
            defect = result.defect if result.verdict == "NG" else None
            index = self._defect_classes.index(defect) + 1 if defect in self._defect_classes else 0
            verdict = PartVerdict(part_id, result.verdict, float(result.score), defect, index, seq)
        now = time.perf_counter()
        timings["publish"] = (now - t_decide) * 1000.0
        timings["total"] = (now - trig.accepted) * 1000.0
        ident = inspector.backbone.identity if inspector is not None else None
        sr = StationResult(
            seq=seq,
            part_id=part_id,
            time_ns=frame.time_ns if frame is not None else time.time_ns(),
            line=result.line if result is not None else self._line,
            verdict=verdict,
            trigger=trig.kind,
            timings_ms=timings,
            result=result,
            frame=frame.image if frame is not None else None,
            frame_ref=frame.ref if frame is not None else job.ref,
            truth=frame.truth if frame is not None else None,
            model=ident.label() if ident else "",
            model_name=ident.model if ident else "",
            weights_sha256=ident.sha256 if ident else None,
            # The result's own version: a swap between inspection and publishing must not relabel it.
            model_version=result.model_version if result is not None else (
                inspector.model_version if inspector is not None else ""),
            config_hash=inspector.config_hash if inspector is not None else "",
            untrained=bool(ident and ident.untrained),
        )
        return verdict, sr

    def _finish_one(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    # ================================================================== after the log
    def _on_written(self, results: list[StationResult], logged: bool) -> None:
        if not logged:
            self.tally.drop("records not logged: log write failed", len(results))
        self._to_observers(results)

    def _on_audit_drop(self, item: Any) -> None:
        if isinstance(item, StationResult):
            assert self._audit is not None
            self._audit.note_dropped(item)
            self.tally.drop("records not logged: log queue full")
            self._to_observers([item])
        else:
            _logger.error("audit event lost (log queue full): %s", item)

    def _to_observers(self, results: list[StationResult]) -> None:
        for runner in self._observers:
            for sr in results:
                runner.put(sr)
        with self._cond:
            self._published += len(results)
            self._cond.notify_all()

    def _camera_event(self, kind: str, detail: str) -> None:
        self.log_event(kind, "camera", detail)

    # ================================================================== figures
    def stats(self) -> LoopStats:
        state, detail = self._state()
        inspector = self._inspector
        ident = inspector.backbone.identity if inspector is not None else None
        cam = self.camera
        audit = self._audit
        write_ms = audit.write_percentiles() if audit is not None else (0.0, 0.0)
        t = self.tally
        sinks = [r.stats() for r in [self._reply, *self._sinks, *self._observers]]
        if self._audit_runner is not None:
            sinks.insert(1, self._audit_runner.stats())
        return LoopStats(
            state=state,
            detail=detail,
            station=self.station.station,
            line=self._line,
            model=ident.label() if ident else "",
            model_version=inspector.model_version if inspector is not None else "",
            untrained=bool(ident and ident.untrained),
            trigger_mode=self.trigger_mode,
            uptime_s=time.monotonic() - self._t_start,
            parts=t.parts,
            ok=t.ok,
            ng=t.ng,
            faults=t.faults,
            last_seq=t.last_seq,
            rate_fps=t.rate(),
            latency_ms=t.latency(),
            stage_ms=t.stage_means(),
            drops=dict(t.drops),
            rejected=dict(t.rejected),
            defects=dict(t.defects),
            camera=CameraStats(cam.label, cam.connected, cam.frames, cam.bad_frames, cam.losses, cam.reconnects,
                               cam.last_error, cam.retry_in()),
            log=LogStats(
                enabled=audit is not None,
                path=str(audit.writer.path or self.log_folder) if audit is not None else "",
                published=audit.published if audit is not None else 0,
                failed=audit.failed if audit is not None else None,
                write_ms_p50=write_ms[0],
                write_ms_p95=write_ms[1],
                files=[str(p) for p in audit.writer.files] if audit is not None else [],
                recovered_files=[p.name for p in audit.writer.recovered] if audit is not None else [],
            ),
            sinks=sinks,
        )
