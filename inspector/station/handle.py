"""The GUI's hold on the station: one StationLoop at a time, restartable, with engines kept across restarts.

A :class:`~inspector.station.loop.StationLoop` runs once (start -> stop); the operator's Start / Stop and
the engineer's "apply" need a station that can stop, start again and swap a line's engine. The
:class:`StationHandle` builds a fresh loop for each run from the same :class:`EngineCache` (so a restart
costs no model load or fit) and the same frame source, re-attaches the GUI observers, and keeps the shift
counters across runs and per shift (station/shifts.py: the current shift's count continues from the audit
log after an application restart and starts from 0 at each shift start). It also implements
:class:`~inspector.plc.port.StationPort`, so one PLC link serves every run. Qt-free: every method may block
for seconds and is called from worker threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from inspector import __version__
from inspector.audit.catalog import open_index
from inspector.audit.h5log import AuditWriter
from inspector.audit.index import Query
from inspector.config import LineConfig, StationConfig, load_station_config, update_line_in_file
from inspector.engine import Inspector
from inspector.plc.port import PartVerdict, StationState, StationStateError, StationStatus, TriggerRejected
from inspector.station.engines import EngineCache, embedding_dim
from inspector.station.loop import StationLoop
from inspector.station.plant_links import LinkState, PlantLinks
from inspector.station.recalibration import EVENT_DISMISSED as PROPOSAL_DISMISSED
from inspector.station.recalibration import ProposalBook, ThresholdProposal
from inspector.station.results import StationResult
from inspector.station.shifts import ShiftCounts, ShiftTally
from inspector.station.sources import FrameSource, create_source
from inspector.station.standby import resumable_line
from inspector.station.stats import LoopStats
from inspector.station.threshold import (
    ThresholdBook,
    ThresholdRecord,
    deploy_threshold,
    file_hashes,
    record_for,
    set_live_threshold,
)

_logger = logging.getLogger(__name__)

Observer = Callable[[StationResult], None]


def _counts(stats: LoopStats | None) -> ShiftCounts:
    if stats is None:
        return ShiftCounts()
    return ShiftCounts(stats.parts, stats.ok, stats.ng, stats.faults)


class StationHandle:
    """Start / stop / changeover / engine swaps of a station, for the GUI (see the module doc)."""

    def __init__(self, config_path: Path, *, line: str | None = None, log_dir: Path | None = None,
                 log: bool | None = None, trigger_mode: str | None = None, rate_hz: float | None = None,
                 source: FrameSource | None = None, plc: bool = True, registry_dir: Path | None = None) -> None:
        self.config_path = Path(config_path)
        self.config: StationConfig = load_station_config(self.config_path)
        self.log_dir = Path(log_dir) if log_dir is not None else self.config.resolve(self.config.log.folder)
        self.log_enabled = self.config.log.enabled if log is None else log
        if line is None and self.log_enabled:  # the line this station last ran (changeovers are remembered)
            line = resumable_line(self.config, self.log_dir)
        self.line: str = self.config.line(line).name
        self.trigger_mode = trigger_mode or self.config.trigger.mode
        self.rate_hz = rate_hz
        self.engines = EngineCache(self.config)
        # Trained model versions (inspector.training's registry): model_dir of the config unless given.
        self.registry_dir = Path(registry_dir) if registry_dir is not None else self.config.resolve(
            self.config.model_dir)
        self._source = source or create_source(self.config.camera, self.config.resolve)
        self._want_plc = plc
        self._observers: list[tuple[Observer, str, int]] = []
        self._loop: StationLoop | None = None
        self._last_stats: LoopStats | None = None
        # (finished runs' counts, a loop being stopped): one attribute, so a reader never sees the stopping loop
        # counted twice or not at all (the counters used to flash to 0 on STOP).
        self._carry: tuple[ShiftCounts, StationLoop | None] = (ShiftCounts(), None)
        self._ops = threading.RLock()  # one lifecycle operation at a time
        # The live threshold per line (station/threshold.py): the same file the running loop keeps.
        self.thresholds = ThresholdBook(self.log_dir) if self.log_enabled else None
        self.link: Any = None
        self.link_error: str = ""
        self.shifts = ShiftTally(self.config.shifts, self._logged_counts)
        # MQTT / OPC UA / results database of the YAML's outputs: per run, the OPC UA server for the session.
        self.plant = PlantLinks(self.config, self, self._shift_facts, self.add_observer)

    def _logged_counts(self, since_ns: int) -> ShiftCounts:
        """Parts the audit log holds from ``since_ns`` on (its index: one row per inspection), all lines."""
        if not self.log_enabled or not self.log_dir.is_dir():
            return ShiftCounts()
        try:
            with open_index(self.log_dir) as index:
                n = index.counts(Query(start_ns=since_ns))
        except Exception as exc:  # the counters start at 0 rather than the GUI not at all; the log is intact
            _logger.warning("shift counters start at 0: the audit log of %s could not be counted (%s)",
                            self.log_dir, exc)
            return ShiftCounts()
        return ShiftCounts(sum(n.values()), n["OK"], n["NG"], n["FAULT"])

    # ------------------------------------------------------------------ observers and figures
    def add_observer(self, fn: Observer, *, name: str = "gui", queue_size: int = 4) -> None:
        """Attach ``fn`` to this and every later run (display: a small dropping queue)."""
        self._observers.append((fn, name, queue_size))
        loop = self._loop
        if loop is not None:
            loop.add_observer(fn, name=name, queue_size=queue_size)

    def remove_observer(self, fn: Observer) -> None:
        """Detach ``fn`` from later runs (the current run keeps feeding it until it stops)."""
        self._observers = [o for o in self._observers if o[0] is not fn]

    @property
    def loop(self) -> StationLoop | None:
        return self._loop

    @property
    def running(self) -> bool:
        return self._loop is not None

    @property
    def inspector(self) -> Inspector | None:
        """The engine of the current line (None before the first start)."""
        loop = self._loop
        if loop is not None:
            return loop.inspector
        return self.engines.cached(self.line)

    def line_config(self, name: str | None = None) -> LineConfig:
        return self.config.line(name or self.line)

    def stats(self) -> LoopStats | None:
        loop = self._loop
        return loop.stats() if loop is not None else self._last_stats

    def counts(self) -> ShiftCounts:
        """The current shift's counters: its parts in the log before this process started + this process's
        parts since (finished runs + the current one), from 0 again after a shift boundary."""
        carry, stopping = self._carry
        loop = self._loop or stopping
        return self.shifts.counts(carry + (_counts(loop.stats()) if loop is not None else ShiftCounts()))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Build and start a loop on the current line (blocking: loads / fits the line on first use)."""
        with self._ops:
            if self._loop is not None:
                return
            loop = StationLoop(self.config, line=self.line, source=self._source, engines=self.engines,
                               log_dir=self.log_dir, log=self.log_enabled, trigger_mode=self.trigger_mode,
                               rate_hz=self.rate_hz, model_dir=self.registry_dir)
            self.plant.attach(loop)  # first: on the first start its OPC UA result feed joins the observers
            for fn, name, size in self._observers:
                loop.add_observer(fn, name=name, queue_size=size)
            try:
                loop.start()  # runs the line's deployed model version and follows the registry
            except BaseException:
                self.plant.detach()
                raise
            self._loop = loop
            self._start_plc()

    def stop(self) -> None:
        """Stop the loop cleanly (queued parts answered, log closed); the PLC link stays up and hears E05."""
        with self._ops:
            loop = self._loop
            if loop is None:
                return
            self._carry = (self._carry[0], loop)
            self._loop = None
            loop.stop()
            self.plant.detach()
            self._last_stats = loop.stats()
            self._carry = (self._carry[0] + _counts(self._last_stats), None)

    def shutdown(self) -> None:
        """Stop the loop and the PLC link (application exit)."""
        with self._ops:
            self.stop()
            self.plant.stop()
            link, self.link = self.link, None
            if link is not None:
                try:
                    link.stop()
                except Exception:
                    _logger.exception("PLC link did not stop cleanly")

    @property
    def paused(self) -> bool:
        """The running loop refuses triggers on command (OPC UA Stop) until resumed."""
        loop = self._loop
        return loop is not None and loop.paused

    def pause(self, who: str = "operator") -> None:  # StationPort (OPC UA Stop)
        """Pause the running loop (triggers refused, E05; counters, log, line stay); nothing to do when stopped."""
        with self._ops:
            if self._loop is not None:
                self._loop.pause(who)

    def resume(self, who: str = "operator") -> None:  # StationPort (OPC UA Start)
        """Resume a paused loop. A station stopped at its panel is started there, not remotely."""
        with self._ops:
            if self._loop is None:
                msg = "the station was stopped at its panel: start it there (START on the operator screen)"
                raise StationStateError(msg)
            self._loop.resume(who)

    def changeover(self, line: str, who: str = "operator") -> None:  # StationPort
        """Switch product line (blocking); when stopped, the line is prepared for the next start."""
        with self._ops:
            loop = self._loop
            if loop is not None:
                loop.changeover(line, who)
            else:
                old = self.line
                self.config.line(line)  # KeyError names the lines
                self.engines.get(line)
                self.log_event("changeover", who, f"line {old} -> {line} (station stopped)", {"line": old},
                               {"line": line})
            self.line = line

    def replace_engine(self, inspector: Inspector, who: str, kind: str, what: str, old: object = "",
                       new: object = "") -> None:
        """Make ``inspector`` the engine of its line; a running loop on that line restarts on it (< 1 s)."""
        with self._ops:
            self.engines.put(inspector)
            loop = self._loop
            if loop is not None and loop.line == inspector.line.name:
                self.stop()
                self.start()
            self.log_event(kind, who, what, old, new)

    def update_line(self, updates: dict[str, Any], who: str, kind: str, what: str, refit: bool = False) -> None:
        """Write dotted keys of the current line to the station YAML (comments kept), log it, and apply it.

        ``refit``: rebuild the line's engine from the new config (prompts, samples) before swapping it in;
        otherwise only the config is updated (the caller changed the live engine, e.g. its threshold).
        """
        with self._ops:
            line = self.line
            before = self.config.line(line).model_dump(mode="json")
            config = update_line_in_file(self.config_path, line, updates)
            old = {k: _dotted(before, k) for k in updates}
            self.config = config
            if not refit:
                self.engines.station = config
                self.log_event(kind, who, what, old, updates)
                return
        # The fit runs outside the lock, on a second engine: the line keeps inspecting, Stop stays possible.
        engines = self._fresh_engines(config)
        inspector = engines.get(line)
        with self._ops:
            self.engines = engines
            self.replace_engine(inspector, who, kind, what, old, updates)

    def build_engine(self, line_config: LineConfig | None = None) -> Inspector:
        """A new, unfitted engine for a line config, sharing the loaded backbone (previews, refits)."""
        line_config = line_config or self.line_config()
        backbone = self.engines.backbone(line_config.model)
        from inspector.text.embeddings import TextEmbeddingCache

        return Inspector(line_config, backbone, TextEmbeddingCache(self.config.resolve(self.config.cache_dir)))

    def _fresh_engines(self, config: StationConfig) -> EngineCache:
        old = self.engines

        def loader(spec: Any, model_dir: Path | None) -> Any:
            return old.backbone(spec)  # shares loaded backbones; loads with the old loader when new

        return EngineCache(config, loader=loader)

    # ------------------------------------------------------------------ the live threshold (one path)
    def threshold_record(self) -> ThresholdRecord | None:
        """The current line's live threshold record (None before anything was recorded or without a log)."""
        if self.thresholds is None:
            return None
        record = self.thresholds.live(self.line)
        inspector = self.inspector
        if record is not None and inspector is not None and record.version != inspector.model_version:
            return None  # the book is for another version than the engine runs: not (yet) live
        return record

    def set_threshold(self, value: float, who: str, why: str = "", *, method: str = "manual",
                      target: float | None = None, interval: tuple[float, float] | None = None,
                      files: list[str] | None = None) -> ThresholdRecord:
        """Make ``value`` the live threshold of the current line's running version (engine, book, audit).

        For the base heads the YAML's ``decision.threshold`` is written too, so the file never disagrees
        with what runs; a trained version's threshold lives in the book only (the YAML is base's).
        """
        with self._ops:
            inspector = self.inspector or self.engines.get(self.line)
            version = inspector.model_version
            base = inspector.adapter is None
            if base:
                self.config = update_line_in_file(self.config_path, self.line, {"decision.threshold": float(value)})
                self.engines.station = self.config
            record = ThresholdRecord(float(value), method, version, target=target, interval=interval,
                                     files=file_hashes(files or []), who=who, why=why,
                                     config_value=self.config.line(self.line).decision.threshold)
            set_live_threshold(self.line, record, book=self.thresholds, log_event=self.log_event, inspector=inspector)
            return record

    def threshold_proposal(self) -> ThresholdProposal | None:
        """The current line's latest production check / proposal (None before one was made or without a log)."""
        return ProposalBook(self.log_dir).proposal(self.line) if self.log_enabled else None

    def apply_threshold_proposal(self, who: str, why: str = "") -> ThresholdRecord:
        """Make the pending production proposal the live threshold (the one path, method ``production``)."""
        with self._ops:
            proposal = self.threshold_proposal()
            inspector = self.inspector or self.engines.get(self.line)
            if proposal is None or not proposal.actionable:
                msg = f"line {self.line} has no pending threshold proposal"
                raise LookupError(msg)
            if proposal.version != inspector.model_version:
                msg = (f"the proposal was made for model {proposal.version} but the line runs "
                       f"{inspector.model_version}: wait for a proposal of the running model")
                raise LookupError(msg)
            reason = f"{why + '; ' if why else ''}production proposal: {proposal.describe()}"
            record = self.set_threshold(proposal.proposed, who, reason, method="production", target=proposal.target,
                                        interval=proposal.interval)
            ProposalBook(self.log_dir).decide(self.line, "applied", who, why)
            return record

    def dismiss_threshold_proposal(self, who: str, why: str) -> ThresholdProposal:
        """Keep the live threshold; the pending proposal is dismissed (audit event with the reason)."""
        with self._ops:
            decided = ProposalBook(self.log_dir).decide(self.line, "dismissed", who, why)
            self.log_event(PROPOSAL_DISMISSED, who, f"line {self.line}: kept {decided.live:.4f}, dismissed "
                           f"{decided.proposed:.4f}{'; ' + why if why else ''}"[:500], decided.to_json(), "")
            return decided

    def deploy_threshold(self, registry: Any, version: str, who: str, why: str) -> ThresholdRecord | None:
        """After a promotion / rollback of the current line: swap the engine and its threshold (the one path)."""
        with self._ops:
            inspector = self.inspector
            if inspector is not None and inspector.line.name != registry.line:
                inspector = None
            line = self.config.line(registry.line)
            return deploy_threshold(line, registry, version, book=self.thresholds, log_event=self.log_event,
                                    who=who, why=why, inspector=inspector)

    def threshold_if_deployed(self, version: str) -> ThresholdRecord:
        """The record ``version`` of the current line would run with if deployed now (nothing changes)."""
        inspector = self.inspector
        if inspector is not None and inspector.line.name != self.line:
            inspector = None
        return record_for(self.line_config(), version, model_dir=self.registry_dir, book=self.thresholds,
                          inspector=inspector)

    # ------------------------------------------------------------------ audit events
    def log_event(self, kind: str, who: str, what: str, old: object = "", new: object = "") -> None:
        """Record a change in the audit log: through the running loop, or directly when stopped."""
        loop = self._loop
        if loop is not None:
            loop.log_event(kind, who, what, old, new)
            return
        if not self.log_enabled:
            _logger.info("event %s by %s (log disabled): %s", kind, who, what)
            return
        inspector = self.engines.cached(self.line)
        dim = embedding_dim(inspector) if inspector is not None else 512
        try:
            with AuditWriter(self.log_dir, self.config.log, station=self.config.station, embedding_dim=dim,
                             software=f"inspector {__version__} gui") as writer:
                writer.log_event(kind, who, what, old, new)
        except Exception:
            _logger.exception("audit event %s could not be written while the station is stopped", kind)
            raise

    # ------------------------------------------------------------------ StationPort (the PLC link)
    def submit_trigger(self, part_id: str, reply: Callable[[PartVerdict], None]) -> None:
        loop = self._loop
        if loop is None:
            raise TriggerRejected("E05", "station stopped")
        loop.submit_trigger(part_id, reply)

    def trigger(self, part_id: str | None = None) -> Future[PartVerdict]:
        loop = self._loop
        if loop is None:
            raise TriggerRejected("E05", "station stopped")
        return loop.trigger(part_id)

    def status(self) -> StationStatus:
        loop = self._loop
        if loop is None:
            return StationStatus(StationState.BUSY, self.line, "", "station stopped", halted=True)
        return loop.status()

    def line_names(self) -> tuple[str, ...]:
        return tuple(x.name for x in self.config.lines)

    # ------------------------------------------------------------------ plant links (MQTT, OPC UA, database)
    def link_states(self) -> list[LinkState]:
        """How each plant link of the YAML's ``outputs`` is doing (none configured: empty)."""
        return self.plant.states()

    def _shift_facts(self) -> dict[str, int]:
        c = self.counts()
        return {"parts": c.parts, "ok": c.ok, "ng": c.ng, "faults": c.faults}

    # ------------------------------------------------------------------ PLC link
    def _start_plc(self) -> None:
        if self.link is not None or not self._want_plc or self.trigger_mode != "plc":
            return
        try:
            from inspector.config.plc import PlcSpec
            from inspector.plc.factory import create_plc_link

            self.link = create_plc_link(self.config.plc or PlcSpec(), self)
            self.link.start()
        except Exception as exc:  # the line runs without its PLC light rather than not at all
            self.link = None
            self.link_error = f"{type(exc).__name__}: {exc}"
            _logger.exception("PLC link could not start")

    def plc_state(self) -> tuple[str, str]:
        """(state, detail): 'off' when this station has no PLC trigger, else the link's state value."""
        if self.trigger_mode != "plc":
            return "off", f"no PLC: trigger mode {self.trigger_mode}"
        if self.link is None:
            return ("lost", self.link_error) if self.link_error else ("stopped", "PLC link not started")
        state = getattr(self.link, "state", "?")
        detail = getattr(self.link, "detail", "")
        return str(getattr(state, "value", state)), str(detail or "")


def _dotted(data: dict, key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
