"""The inspection loop: trigger -> capture -> inspect -> decide -> publish, joined by bounded queues.

This module holds the lifecycle (start, stop, changeover, the StationPort contract) and the inspect
thread; its parts live beside it: :mod:`.capture` (the capture thread), :mod:`.phase` (the loop's
life as one :class:`~inspector.station.phase.Phase`), :mod:`.flow` (parts in flight),
:mod:`.results` (verdict and StationResult of each part), :mod:`.outputs` (reply, sinks, log,
observers), :mod:`.follow` (following model deployments) and :mod:`.stats` (the figures).

Threads (each owns its stage; only queues connect them):

* ``station-capture`` takes triggers (the trigger queue, or the free-run clock), grabs and validates
  a frame, and queues a job. It also reconnects a lost camera.
* ``station-inspect`` runs the engine, decides, numbers the result (``seq``) and publishes it:
  the PLC / API reply, then every sink. It only enqueues, so no sink can slow it down.
* ``sink-reply`` calls reply callbacks (never dropped: each accepted trigger gets exactly one).
* ``sink-audit`` writes the HDF5 log; after each flush it passes the results to the observers,
  so what the dashboard or GUI shows is already in the log (see inspector.audit.h5log).
* ``sink-<name>`` one per extra sink and observer.

States (:class:`StationState`): READY accepts triggers; BUSY while starting, changing over, paused
(:meth:`StationLoop.pause`, OPC UA Stop) or stopping, and after the run is complete; FAULT while the
camera is lost or (with ``log.required``) the audit log cannot write. Triggers are refused with E05
unless READY and with E04 when the trigger queue is full. A part that cannot be inspected (no frame,
bad frame, engine error, station stopping) is answered NG with defect FAULT and logged: never OK.

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
from pathlib import Path

from inspector import __version__
from inspector.audit.h5log import AuditLogError, AuditWriter
from inspector.audit.records import to_text
from inspector.config import StationConfig
from inspector.decision.result import InspectionResult
from inspector.engine import Inspector
from inspector.errors import InspectorError
from inspector.files import FolderLock
from inspector.plc.port import PartVerdict, StationState, StationStatus, TriggerRejected, UnknownLineError
from inspector.station.capture import Capture
from inspector.station.engines import EngineCache, embedding_dim
from inspector.station.flow import PartFlow
from inspector.station.follow import ModelFollower
from inspector.station.mutual import MutualBuffers
from inspector.station.outputs import Outputs
from inspector.station.phase import LIVE, LoopPhase, Phase
from inspector.station.recalibration import ProductionSampler
from inspector.station.results import Job, ModelStamp, ResultBuilder, StationResult
from inspector.station.sinks import AuditSink, Policy, Sink, SinkRunner
from inspector.station.sources import Camera, FrameSource, create_source
from inspector.station.standby import claim_station, remember_line, resumable_line
from inspector.station.stats import LoopStats, Tally, camera_stats, log_stats, loop_stats
from inspector.station.threshold import ThresholdBook
from inspector.station.triggers import FreeRunClock, FutureReply, Trigger, TriggerKind, TriggerQueue, check_part_id

_logger = logging.getLogger(__name__)

_POLL_S = 0.1
CHANGEOVER_DRAIN_S = 30.0


class StationLoop:
    """A running station; implements :class:`inspector.plc.port.StationPort`.

    ``source`` replaces the camera of the config (tests, tools); ``engines`` shares fitted lines
    with other code; ``log_dir`` overrides ``log.folder`` and ``model_dir`` the config's model
    registry; ``max_parts`` ends the run after that many parts (``inspector run --frames``).
    ``follow_models``: run each line's deployed trained version and follow promotions.
    ``resume_line`` (with no ``line``): start on the line the last station on this log folder was
    running (``inspector run`` after a restart or a standby takeover), else the config's first line.
    ``station_lock``: the log folder's lock when the caller already holds it (see :meth:`start`).
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
        station_lock: FolderLock | None = None,
        resume_line: bool = False,
    ) -> None:
        self.station = station
        self.log_enabled = station.log.enabled if log is None else log
        self.log_folder = Path(log_dir) if log_dir is not None else station.resolve(station.log.folder)
        if line is None and resume_line and self.log_enabled:
            line = resumable_line(station, self.log_folder)
        try:
            line = station.line(line).name
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
        self._phase = LoopPhase()
        self._flow = PartFlow()
        self._results = ResultBuilder(line)
        self._outputs = Outputs(self.tally, self._flow,
                                reply_room=station.trigger.queue_size + inspect_queue + self.max_batch + 8)
        self._jobs: queue.Queue[Job] = queue.Queue(maxsize=max(1, inspect_queue))
        self._stop_evt = threading.Event()
        self._capture = Capture(
            self.camera, TriggerQueue(station.trigger.queue_size), self._jobs,
            FreeRunClock(rate_hz or station.trigger.rate_hz) if self.trigger_mode == "free_run" else None,
            max_parts=max_parts, phase=self._phase, flow=self._flow, tally=self.tally, stop=self._stop_evt,
            inspecting=lambda: self._inspect_thread is not None and self._inspect_thread.is_alive())
        self._inspector: Inspector | None = None
        self._engine_lock = threading.Lock()
        self._changeover_lock = threading.Lock()
        self._seq = 0
        self._soft_ids = 0
        self._t_start = time.monotonic()
        self._capture_thread: threading.Thread | None = None
        self._inspect_thread: threading.Thread | None = None
        self.model_dir = Path(model_dir) if model_dir is not None else station.resolve(station.model_dir)
        # The live threshold of each line and where it came from (station/threshold.py), beside the line memory.
        self.thresholds = ThresholdBook(self.log_folder) if self.log_enabled else None
        # Threshold proposals from the parts it judges (decision.recalibration), beside the line memory too.
        self.production = (ProductionSampler(self.log_folder, lambda name: self.station.line(name), self.log_event)
                           if self.log_enabled else None)
        # Each line's buffer of recent OK parts for the mutual head (station/mutual.py), beside the line memory.
        self.mutual = MutualBuffers(self.log_folder if self.log_enabled else None, station.line,
                                    self._engine_for, self.log_event, book=self.thresholds)
        self._follower = ModelFollower(self.model_dir, self.log_event, enabled=follow_models, book=self.thresholds,
                                       line_config=station.line)
        # The log folder's station lock (one station per folder; a warm standby waits on it). Taken at
        # start() when logging is on, unless the caller already holds it (``inspector run`` takes it
        # before loading anything; a standby after its wait). Released at stop(), after the log closed.
        self.station_lock = station_lock

    # ================================================================== lifecycle
    def start(self) -> StationLoop:
        """Load the line (blocking: seconds), open the log and the camera, start the threads."""
        if not self._phase.enter(Phase.STARTING, "", Phase.CREATED):
            msg = "station loop already started"
            raise RuntimeError(msg)
        try:
            if self.log_enabled and (self.station_lock is None or not self.station_lock.held):
                self.station_lock = claim_station(self.log_folder)  # before the slow line load: refuse early
            try:
                inspector = self.engines.get(self.line)
            except BaseException:
                self._release_station()
                raise
        except BaseException:
            self._phase.set(Phase.CREATED)  # nothing was started: start() may be tried again
            raise
        self._install(inspector, self.line)
        try:
            if self.log_enabled:
                try:
                    self._open_log(inspector)
                except AuditLogError as exc:
                    if self.station.log.required:
                        raise
                    _logger.error("running WITHOUT the audit log (log.required is false): %s", exc)
            if self.log_enabled:
                remember_line(self.log_folder, self.line)
            self._follower.follow(inspector)
            if self.production is not None and self._outputs.logging:
                # A sink, not an observer: sinks stop before the log closes, so its last proposal is logged.
                self.add_sink(self.production, name="production", queue_size=1024)
            if any(x.heads.mutual > 0 for x in self.station.lines):
                self.add_sink(self.mutual, name="mutual", queue_size=64)
            if not self.camera.connect():
                _logger.warning("camera not available at start: %s (retrying)", self.camera.last_error)
            self._outputs.start()
            self._inspect_thread = threading.Thread(target=self._inspect_loop, name="station-inspect", daemon=True)
            self._capture_thread = threading.Thread(target=self._capture.run, name="station-capture", daemon=True)
            self._t_start = time.monotonic()
            self._phase.set(Phase.RUNNING)
            self._inspect_thread.start()
            self._capture_thread.start()
        except BaseException:
            self._phase.set(Phase.STOPPING)
            self._shut_down(30.0)
            raise
        _logger.info("station %s running line %s (%s trigger)", self.station.station, self.line, self.trigger_mode)
        return self

    def _open_log(self, inspector: Inspector) -> None:
        spec = self.station.log
        writer = AuditWriter(self.log_folder, spec, station=self.station.station,
                             embedding_dim=embedding_dim(inspector), software=f"inspector {__version__}")
        self._seq = writer.last_seq
        resume = getattr(self.camera.source, "resume_after", None)  # test doubles may not be FrameSources
        if resume is not None:
            resume(writer.last_seq)
        self._outputs.open_log(writer, spec, inbox_folder=self.log_folder)
        for path in writer.recovered:
            self.log_event("log_recovered", "station", f"{path.name} was left open by a crashed run; sealed")
        ident = inspector.backbone.identity
        self.log_event("station_start", "station", f"station {self.station.station} started", "",
                       {"line": self.line, "config": str(self.station.source or ""), "model": ident.label(),
                        "weights_sha256": ident.sha256 or "", "config_hash": inspector.config_hash,
                        "trigger": self.trigger_mode, "camera": self.camera.label, **inspector.backend_record()})

    def stop(self, timeout: float = 30.0) -> None:
        """Stop cleanly: answer or inspect every queued part, drain every sink, close the log."""
        if self._phase.enter(Phase.STOPPING, "", *LIVE):
            self._shut_down(timeout)

    def _shut_down(self, timeout: float) -> None:
        self._stop_evt.set()
        deadline = time.monotonic() + timeout
        for t in (self._inspect_thread, self._capture_thread):
            if t is None or t.ident is None:  # start() failed before the threads ran
                continue
            t.join(max(0.1, deadline - time.monotonic()))
            if t.is_alive():
                _logger.error("%s did not stop within %.0f s", t.name, timeout)
        self._flow.capture_exited.set()
        self._follower.stop()
        self._outputs.stop_replies_and_sinks(deadline)
        if self.production is not None:
            self.production.flush()
        if self._outputs.logging:
            tally = self.tally
            self.log_event("station_stop", "station", f"station {self.station.station} stopped", "",
                           {"parts": tally.parts, "ok": tally.ok, "ng": tally.ng, "faults": tally.faults,
                            "drops": dict(tally.drops)})
            self._outputs.close_log(deadline)
        self._outputs.stop_observers(deadline)
        self.camera.close()
        self._release_station()
        self._phase.set(Phase.STOPPED)
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
        return self._flow.done()

    def wait_done(self, timeout: float | None = None) -> bool:
        return self._flow.wait_done(timeout)

    def wait_published(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` parts are published (logged, or past the log); False on timeout."""
        return self._flow.wait_published(n, timeout)

    # ================================================================== sinks and events
    def add_sink(self, sink: Sink | Callable[[StationResult], None], *, name: str | None = None,
                 queue_size: int = 64, policy: Policy = "drop_oldest") -> SinkRunner:
        """Attach a sink fed with every result as soon as it is decided (before the log)."""
        return self._attach(self._outputs.runner(sink, name, queue_size, policy, observer=False))

    def add_observer(self, observer: Sink | Callable[[StationResult], None], *, name: str | None = None,
                     queue_size: int = 16, policy: Policy = "drop_oldest") -> SinkRunner:
        """Attach an observer (display): fed with each result once it is published to the log."""
        return self._attach(self._outputs.runner(observer, name, queue_size, policy, observer=True))

    def _attach(self, runner: SinkRunner) -> SinkRunner:
        if self._phase.phase in LIVE:
            runner.start()
        return runner

    @property
    def audit(self) -> AuditSink | None:
        """The audit log sink of this run (None without a log)."""
        return self._outputs.audit

    def log_event(self, kind: str, who: str, what: str, old: object = "", new: object = "") -> None:
        """Record a change or incident in the audit log (config, threshold, model, line, camera)."""
        _logger.info("event %s by %s: %s", kind, who, what)
        if self._outputs.logging:
            self._outputs.log_event(kind, who, what, to_text(old), to_text(new))

    def _camera_event(self, kind: str, detail: str) -> None:
        self.log_event(kind, "camera", detail)

    # ================================================================== StationPort
    def line_names(self) -> tuple[str, ...]:
        return self.engines.line_names()

    @property
    def line(self) -> str:
        return self._results.line

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
        return StationStatus(state, self.line, version, detail, halted=self._phase.phase is Phase.PAUSED)

    @property
    def paused(self) -> bool:
        return self._phase.phase is Phase.PAUSED

    def pause(self, who: str = "station") -> None:
        """Stop taking triggers (OPC UA Stop): E05 until :meth:`resume`; parts accepted before finish, and the
        line, counters, log and outputs stay. StationStateError unless running (starting, changing over, ...)."""
        detail = f"paused by {who} at {time.strftime('%H:%M:%S')}: triggers refused until Start"
        if self._phase.pause(detail):
            self.log_event("station_paused", who, f"station {self.station.station} paused: triggers refused")

    def resume(self, who: str = "station") -> None:
        """Take triggers again after :meth:`pause` (OPC UA Start); StationStateError unless paused or running."""
        if self._phase.resume():
            self.log_event("station_resumed", who, f"station {self.station.station} taking triggers again")

    def submit_trigger(self, part_id: str, reply: Callable[[PartVerdict], None]) -> None:
        """Queue one part (PLC link); ``reply`` is called exactly once. Raises TriggerRejected E04 / E05."""
        self._submit(check_part_id(part_id), reply, "plc")

    def trigger(self, part_id: str | None = None) -> Future[PartVerdict]:
        """Software trigger (GUI button, API, tests): the verdict arrives in the returned Future."""
        if part_id is None:
            with self._phase.lock:
                self._soft_ids += 1
                part_id = f"S{self._soft_ids:06d}"
        reply = FutureReply()
        self._submit(check_part_id(part_id), reply, "software")
        return reply.future

    def _submit(self, part_id: str, reply: Callable[[PartVerdict], None], kind: TriggerKind) -> None:
        with self._phase.lock:
            state, detail = self._state()
            if state is not StationState.READY:
                self.tally.reject("E05")
                msg = f"station not ready ({state.value}): {detail or 'not accepting triggers'}"
                raise TriggerRejected("E05", msg)
            self._flow.accepted()
            try:
                self._capture.triggers.submit(Trigger(part_id, kind, reply))
            except TriggerRejected:
                self.tally.reject("E04")
                self._flow.finished()
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
            if line == self.line and old is not None:
                return
            self._phase.enter(Phase.CHANGING_OVER, f"changeover to {line}", Phase.RUNNING)
            try:
                inspector = self.engines.get(line)
                if not self._flow.wait_idle(CHANGEOVER_DRAIN_S):
                    msg = (f"changeover to {line} abandoned: {self._flow.inflight} part(s) still in flight after "
                           f"{CHANGEOVER_DRAIN_S:.0f} s; the station stays on line {self.line}")
                    raise InspectorError(msg)
                self._install(inspector, line)
                if self.log_enabled:
                    remember_line(self.log_folder, line)
            finally:
                self._phase.enter(Phase.RUNNING, "", Phase.CHANGING_OVER)
            self._follower.follow(inspector)
        ident = inspector.backbone.identity
        self.log_event("changeover", who, f"line {old.line.name if old else '-'} -> {line}",
                       {"line": old.line.name, "config_hash": old.config_hash} if old else "",
                       {"line": line, "config_hash": inspector.config_hash, "model": ident.label(),
                        **inspector.backend_record()})

    def _install(self, inspector: Inspector, line: str) -> None:
        if inspector.line.heads.mutual > 0:
            self.mutual.install(inspector)  # its buffer (kept over changeovers, read back after a restart)
        with self._engine_lock:
            self._inspector = inspector
            self._results.install(inspector, line)

    def _engine_for(self, line: str) -> Inspector | None:
        """The running engine when it is ``line``'s (the mutual buffer feeds it), else None."""
        with self._engine_lock:
            engine = self._inspector
        return engine if engine is not None and engine.line.name == line else None

    def _state(self) -> tuple[StationState, str]:
        return self._phase.state(self.camera, self._outputs.audit, self.station.log.required)

    # ================================================================== inspect thread
    def _inspect_loop(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_POLL_S)
            except queue.Empty:
                if self._flow.capture_exited.is_set() and self._jobs.empty():
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

    def _process(self, batch: list[Job]) -> None:
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

    def _publish(self, job: Job, result: InspectionResult | None, fault: str | None, t_inspect: float | None,
                 inspector: Inspector | None) -> None:
        """Number, answer and hand out one part. Exactly once per job, whatever fails."""
        if job.published:
            return
        job.published = True
        self._seq += 1
        try:
            sr = self._results.build(job, self._seq, result, fault, t_inspect, inspector)
        except Exception:
            _logger.exception("building the result of part %s failed", job.trigger.part_id)
            sr = self._results.build(job, self._seq, None, "station error (see the station log)", None, inspector)
        if job.trigger.reply is not None:
            self._outputs.answer(job.trigger.reply, sr.verdict)
        try:
            self._outputs.hand_out(sr)
        except Exception:
            _logger.exception("handing part %s to the sinks failed", sr.part_id)
        finally:
            self._flow.finished()

    # ================================================================== figures
    def stats(self) -> LoopStats:
        state, detail = self._state()
        stats = loop_stats(state=state, detail=detail, station=self.station.station, line=self.line,
                           model=ModelStamp.of(self._inspector), trigger_mode=self.trigger_mode,
                           uptime_s=time.monotonic() - self._t_start, tally=self.tally,
                           camera=camera_stats(self.camera), log=log_stats(self._outputs.audit, self.log_folder),
                           sinks=self._outputs.sink_stats())
        mutual = self.mutual.status(self.line)
        stats.mutual = mutual.text if mutual.enabled else ""
        return stats
