"""Fault injection: real faults, scripted and repeated, against the whole station; recovery measured.

Scenarios (``--only KIND``, each ``--repeat N`` times, default 20):

* ``serial``: the PLC's serial port vanishes (the pseudo-terminal the station opened is closed and its
  path removed, as pulling a USB adapter does) and comes back after an outage of 0.5-5 s; the
  station's link reopens it by itself.
* ``camera``: the camera fails (every grab raises / no frame arrives within the grab timeout) and
  returns; the station's camera reconnects with its backoff.
* ``disk``: the log folder cannot be written (this process's RLIMIT_FSIZE soft limit is lowered to 0
  with SIGXFSZ ignored, so every HDF5 write fails with EFBIG, as on a full disk; no root needed),
  then space returns. The station must keep answering the PLC (E05 while the log is down: the demo
  line has ``log.required``), flag the fault, and resume logging with a ``log_gap`` event naming
  the seqs it could not log.
* ``kill``: ``inspector run`` (free-run, logging) is killed with SIGKILL at a random part, and
  restarted on the same log folder: every printed (published) part must be in the log and the
  crashed file sealed.
* ``standby``: as ``kill``, with a warm standby (``inspector run --standby``) waiting on the same config and
  log folder; it takes over. Recovery: SIGKILL -> first part the standby publishes. ``kill`` and
  ``standby`` free-run without a PLC (nothing is acknowledged, no protocol is spoken): they check the
  published parts against the log instead.
* ``checkpoint``: a registry version whose ``adapter.safetensors`` is corrupt (garbage, truncated,
  zeroed, foreign header) is promoted while the station runs a good version; it must be rejected
  with a clear error while the good version keeps inspecting.

The PLC is a scripted one at the far end of the pseudo-terminal, triggering at ``--rate`` parts/s
and waiting for each ACK (or ERR) like a line PLC. For each scenario: repetitions passed, recovery
time p50 / max (fault removed -> first inspected part answered; kill: the restarted station's
``station_start`` event -> its first published part), acknowledged records lost (must be 0) and OK verdicts
without an inspection (must be 0).

    .venv/bin/python benchmarks/faults.py --model inspector-tiny-vit                  # full mode: 20 each
    .venv/bin/python benchmarks/faults.py --model inspector-tiny-vit --repeat 3 --out-dir DIR   # CI
    .venv/bin/python benchmarks/faults.py --model inspector-tiny-vit --only disk --repeat 5
    .venv/bin/python benchmarks/faults.py --render benchmarks/results/faults.json   # its faults.md again, no run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import platform
import random
import select
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _reliability import (
    DEMO_CONFIG,
    ROOT,
    PartTrace,
    command_line,
    cpu_name,
    describe_model,
    percentiles,
    read_audit,
    read_audit_isolated,
    reconcile,
    station_dict,
    write_yaml,
)

from inspector.station.sources import CameraError, FrameSource, RawFrame

KINDS = ("serial", "camera", "disk", "kill", "standby", "checkpoint")
NO_PLC = ("kill", "standby")  # free-running station processes: no PLC, nothing acknowledged
RECOVERY_LIMIT_S = 2.0
# Outage lengths, cycled over the repetitions: short ones and one past every backoff's early steps.
HOLDS_S = (1.0, 5.0, 0.5, 2.0)
WAIT_S = 15.0  # give up waiting for a recovery after this long (the repetition fails)


# ================================================================================================ the PLC


class LinePlc:
    """The PLC at the master end of a pseudo-terminal: a trigger every 1/rate s, each waiting for its ACK or
    ERR (up to ``ack_timeout_s``), results read as they come. ``unplug()`` / ``replug()`` pull the cable."""

    def __init__(self, port: Any, rate_hz: float, prefix: str, ack_timeout_s: float = 0.5) -> None:
        from inspector.plc import protocol as proto

        self._proto = proto
        self.port = port
        self.period = 1.0 / rate_hz
        self.prefix = prefix
        self.ack_timeout_s = ack_timeout_s
        self.parts: dict[str, PartTrace] = {}
        self.violations: list[str] = []
        self.not_sent = 0  # triggers due while the cable was pulled
        self._io = threading.Lock()  # the pty descriptors vs unplug / replug
        self._cond = threading.Condition()
        self._awaiting: str | None = None
        self._splitter = proto.LineSplitter()
        self._stop = threading.Event()
        self._stop_sending = threading.Event()
        self._threads = [threading.Thread(target=self._send_loop, name="plc-line-send", daemon=True),
                         threading.Thread(target=self._read_loop, name="plc-line-read", daemon=True)]
        self._count = 0

    def start(self) -> LinePlc:
        for t in self._threads:
            t.start()
        return self

    def stop_sending(self) -> None:
        self._stop_sending.set()
        self._threads[0].join(timeout=5)

    def stop(self) -> None:
        self.stop_sending()
        self._stop.set()
        self._threads[1].join(timeout=5)

    def unplug(self) -> None:
        with self._io:
            self.port.close()
            self._splitter.reset()
        with self._cond:
            self._awaiting = None
            self._cond.notify_all()

    def replug(self) -> None:
        with self._io:
            self.port.open()

    def traces(self) -> list[PartTrace]:
        with self._cond:
            return list(self.parts.values())

    def first_inspected_after(self, t: float) -> float | None:
        """perf_counter time of the first inspection verdict received after ``t``."""
        with self._cond:
            times = [p.result_at for p in self.parts.values() if p.result_at and p.result_at > t and p.inspected]
        return min(times) if times else None

    def wait_inspected_after(self, t: float, timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            found = self.first_inspected_after(t)
            if found is not None:
                return found
            time.sleep(0.01)
        return None

    def wait_settled(self, timeout: float = 10.0) -> bool:
        """Wait until every acknowledged part has its result."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self._cond:
                if all(p.result_at is not None for p in self.parts.values() if p.ack_at is not None):
                    return True
            time.sleep(0.02)
        return False

    # --- threads ----------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        next_at = time.perf_counter()
        while not self._stop_sending.is_set():
            delay = next_at - time.perf_counter()
            if delay > 0 and self._stop_sending.wait(delay):
                return
            next_at = max(next_at + self.period, time.perf_counter())
            self._count += 1
            part_id = f"{self.prefix}{self._count:06d}"
            with self._io:
                fd = self.port.master
                if fd < 0:
                    self.not_sent += 1
                    continue
                with self._cond:
                    trace = PartTrace(part_id, time.perf_counter())
                    self.parts[part_id] = trace
                    self._awaiting = part_id
                try:
                    os.write(fd, f"TRIG,{part_id}\r\n".encode())
                except OSError:
                    continue
            with self._cond:
                self._cond.wait_for(lambda t=trace: t.ack_at is not None or t.refused is not None,
                                    self.ack_timeout_s)
                if self._awaiting == part_id:
                    self._awaiting = None

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            data = b""
            with self._io:
                fd = self.port.master
                if fd >= 0:
                    try:
                        ready, _, _ = select.select([fd], [], [], 0.02)
                        if ready:
                            data = os.read(fd, 4096)
                    except (OSError, ValueError):
                        data = b""
                    lines = self._splitter.feed(data) if data else []
                else:
                    lines = []
            if fd < 0:
                time.sleep(0.01)
                continue
            now = time.perf_counter()
            for line in lines:
                self._handle(line, now)

    def _handle(self, line: Any, now: float) -> None:
        proto = self._proto
        if isinstance(line, proto.Overlong):
            self.violations.append("station sent an overlong line")
            return
        try:
            message = proto.parse_reply(line).message
        except proto.ProtocolError as exc:
            self.violations.append(f"malformed reply {line[:60]!r}: {exc.text}")
            return
        with self._cond:
            if isinstance(message, proto.Ack):
                trace = self.parts.get(message.part_id)
                if trace is None or trace.ack_at is not None:
                    self.violations.append(f"ACK for {message.part_id}: {'unknown part' if trace is None else 'twice'}")
                else:
                    trace.ack_at = now
            elif isinstance(message, proto.Result):
                trace = self.parts.get(message.part_id)
                if trace is None or trace.result_at is not None:
                    self.violations.append(f"RES for {message.part_id}: {'unknown part' if trace is None else 'twice'}")
                else:
                    if trace.ack_at is None:
                        self.violations.append(f"RES for {message.part_id} before its ACK")
                    trace.result_at, trace.verdict = now, message.verdict
                    trace.score, trace.defect = message.score, message.defect
            elif isinstance(message, proto.ErrorReply):
                trace = self.parts.get(self._awaiting) if self._awaiting else None
                if trace is None:
                    self.violations.append(f"unsolicited ERR,{message.code},{message.text}")
                else:
                    trace.refused = f"{message.code} {message.text}"
            self._cond.notify_all()


# ================================================================================================ the station


class FaultySource(FrameSource):
    """The line's camera with a plug: ``fail('raise')`` makes every grab and open fail, ``fail('stall')``
    makes grabs deliver nothing until the grab timeout; ``restore()`` brings frames back."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner = inner
        self.label = inner.label
        self.mode: str | None = None
        self._back = threading.Event()
        self._back.set()

    def fail(self, mode: str) -> None:
        self._back.clear()
        self.mode = mode

    def restore(self) -> None:
        self.mode = None
        self._back.set()

    def open(self) -> None:
        if self.mode is not None:
            msg = f"{self.label}: device not found (fault injected)"
            raise CameraError(msg)
        self.inner.open()

    def read(self, timeout_s: float) -> RawFrame:
        if self.mode == "raise":
            msg = f"{self.label}: cable pulled (fault injected)"
            raise CameraError(msg)
        if self.mode == "stall" and not self._back.wait(timeout_s):
            msg = f"{self.label}: no frame within {timeout_s:g} s (fault injected)"
            raise CameraError(msg)
        return self.inner.read(timeout_s)

    def close(self) -> None:
        self.inner.close()


class StationUnderTest:
    """The real station (StationLoop + ASCII PLC server) on a fresh pty and log folder, driven by a LinePlc."""

    def __init__(self, data: dict[str, Any], work: Path, engines: Any, rate_hz: float, prefix: str,
                 camera: dict[str, Any] | None = None, faulty_camera: bool = False, **top: Any) -> None:
        from inspector.config import parse_station_config
        from inspector.plc.factory import create_plc_link
        from inspector.plc.ptypair import PtyPort
        from inspector.station.loop import StationLoop
        from inspector.station.sources import create_source

        work.mkdir(parents=True, exist_ok=True)
        self.work = work
        self.port = PtyPort(work / "station").open()
        data = {**json.loads(json.dumps(data)), **top}
        data["trigger"] = {**data.get("trigger", {}), "mode": "plc"}
        data["log"] = {**data.get("log", {}), "folder": str(work / "logs")}
        data["camera"] = {**data.get("camera", {}), **(camera or {})}
        data["plc"] = {**(data.get("plc") or {}), "protocol": "ascii", "port": str(self.port.path)}
        self.station = parse_station_config(data)
        self.source = FaultySource(create_source(self.station.camera, self.station.resolve)) if faulty_camera else None
        self.loop = StationLoop(self.station, engines=engines, trigger_mode="plc", source=self.source)
        self.decided: dict[str, int] = {}
        self.loop.add_sink(lambda sr: self.decided.__setitem__(sr.part_id, sr.seq), name="decided",
                           queue_size=4096, policy="block")
        self.link = create_plc_link(self.station.plc, self.loop)  # type: ignore[arg-type]
        self.plc = LinePlc(self.port, rate_hz, prefix)

    def start(self) -> StationUnderTest:
        from inspector.plc.base import LinkState

        self.loop.start()
        self.link.start()
        if not self.link.wait_for_state(LinkState.CONNECTED, timeout=10):
            msg = f"PLC link did not come up: {self.link.detail}"
            raise RuntimeError(msg)
        self.plc.start()
        return self

    def stop(self) -> None:
        self.plc.stop_sending()
        self.plc.wait_settled(10)
        self.plc.stop()
        self.link.stop()
        self.loop.stop()
        self.port.close()

    def reconcile(self) -> tuple[Any, Any]:
        log = read_audit_isolated(self.work / "logs")
        return reconcile(self.plc.traces(), log, self.decided), log


# ================================================================================================ results


@dataclass
class Rep:
    index: int
    passed: bool
    recovery_s: float | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    kind: str
    title: str
    how: str
    reps: list[Rep] = field(default_factory=list)
    acked_lost: int = 0
    ok_without_inspection: int = 0
    unmatched: int = 0
    violations: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (self.error is None and bool(self.reps) and all(r.passed for r in self.reps) and self.acked_lost == 0
                and self.ok_without_inspection == 0 and self.unmatched == 0 and not self.violations
                and all(self.checks.values()))

    def as_dict(self) -> dict[str, Any]:
        rec = [r.recovery_s for r in self.reps if r.recovery_s is not None]
        return {"kind": self.kind, "title": self.title, "how": self.how, "passed": self.passed,
                "repetitions": len(self.reps), "repetitions_passed": sum(r.passed for r in self.reps),
                "recovery_s": percentiles(rec, (50,)), "recovery_limit_s": RECOVERY_LIMIT_S,
                "acked_lost": self.acked_lost, "ok_without_inspection": self.ok_without_inspection,
                "unmatched": self.unmatched, "violations": self.violations[:20], "checks": self.checks,
                "figures": self.figures, "notes": self.notes, "error": self.error, "seconds": round(self.seconds, 1),
                "reps": [{"index": r.index, "passed": r.passed, "recovery_s": r.recovery_s, **r.detail}
                         for r in self.reps]}


def _settle(sut: StationUnderTest, seconds: float = 0.6) -> None:
    """Let parts flow normally for a moment between two faults."""
    t = time.perf_counter()
    time.sleep(seconds)
    sut.plc.wait_inspected_after(t, WAIT_S)


def _finish(sc: Scenario, sut: StationUnderTest) -> Any:
    """Stop the station and match the PLC's traces with the audit log."""
    sut.stop()
    rec, log = sut.reconcile()
    sc.acked_lost = len(rec.lost)
    sc.ok_without_inspection = len(rec.ok_without_inspection)
    sc.unmatched = len(rec.unmatched)
    sc.violations += sut.plc.violations
    sc.figures["plc"] = rec.summary()
    sc.figures["plc"]["not_sent_cable_pulled"] = sut.plc.not_sent
    sc.figures["log_events"] = {k: len(log.events_of(k)) for k in sorted({e["kind"] for e in log.events})}
    return rec, log


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


# ================================================================================================ scenarios


def scenario_serial(ctx: Context) -> Scenario:
    from inspector.plc.base import LinkState

    sc = Scenario("serial", "serial port vanishes and returns",
                  "the station's pty is closed and its path removed (USB adapter pulled), back after "
                  f"{'/'.join(f'{h:g}' for h in HOLDS_S)} s (cycled); plc reconnect settings of the config "
                  "(default 0.5 s doubling to 10 s)")
    sut = ctx.station("serial")
    sut.start()
    try:
        for i in range(ctx.repeat):
            hold = HOLDS_S[i % len(HOLDS_S)]
            _settle(sut)
            t_fault = time.perf_counter()
            sut.plc.unplug()
            went_down = sut.link.wait_for_state(LinkState.LOST, timeout=5)
            detect = time.perf_counter() - t_fault
            time.sleep(max(0.0, t_fault + hold - time.perf_counter()))
            t_back = time.perf_counter()
            sut.plc.replug()
            up = sut.link.wait_for_state(LinkState.CONNECTED, timeout=WAIT_S)
            reconnect = time.perf_counter() - t_back if up else None
            first = sut.plc.wait_inspected_after(t_back, WAIT_S)
            recovery = None if first is None else first - t_back
            ok = went_down and recovery is not None and recovery < RECOVERY_LIMIT_S
            sc.reps.append(Rep(i + 1, ok, _r(recovery), {"outage_s": hold, "link_lost_after_s": _r(detect),
                                                          "link_up_after_s": _r(reconnect)}))
            ctx.tick(sc, sc.reps[-1])
    finally:
        rec, _log = _finish(sc, sut)
    sc.figures["link"] = sut.link.counters.as_dict()
    sc.checks["link reconnected after every outage"] = sut.link.counters.reconnects >= len(sc.reps)
    sc.notes.append(f"{len(rec.no_result)} acknowledged part(s) were in flight when the cable was pulled: their RES "
                    "could not be sent (the PLC's own timeout covers them); all of them are in the audit log")
    return sc


def scenario_camera(ctx: Context) -> Scenario:
    sc = Scenario("camera", "camera fails and returns",
                  "the line's camera source raises on every grab (odd repetitions) or delivers no frame until the "
                  f"grab timeout (even ones), back after {'/'.join(f'{h:g}' for h in HOLDS_S)} s (cycled); "
                  "camera.reconnect_min_s 0.05, reconnect_max_s 1.0")
    sut = ctx.station("camera", camera={"reconnect_min_s": 0.05, "reconnect_max_s": 1.0}, faulty_camera=True)
    assert sut.source is not None
    sut.start()
    try:
        for i in range(ctx.repeat):
            hold = HOLDS_S[i % len(HOLDS_S)]
            mode = "raise" if i % 2 == 0 else "stall"
            _settle(sut)
            losses = sut.loop.camera.losses
            t_fault = time.perf_counter()
            sut.source.fail(mode)
            time.sleep(hold)
            detected = sut.loop.camera.losses > losses
            t_back = time.perf_counter()
            sut.source.restore()
            first = sut.plc.wait_inspected_after(t_back, WAIT_S)
            recovery = None if first is None else first - t_back
            answered = [p for p in sut.plc.traces() if t_fault < (p.result_at or 0) < t_back]
            faults = sum(1 for p in answered if not p.inspected)
            ok = recovery is not None and recovery < RECOVERY_LIMIT_S
            sc.reps.append(Rep(i + 1, ok, _r(recovery), {"mode": mode, "outage_s": hold, "camera_lost": detected,
                                                          "answered_during": len(answered),
                                                          "fault_answers_during": faults}))
            ctx.tick(sc, sc.reps[-1])
    finally:
        _finish(sc, sut)
    cam = sut.loop.stats().camera
    sc.figures["camera"] = {"losses": cam.losses, "reconnects": cam.reconnects, "frames": cam.frames}
    sc.checks["camera reconnected after every loss"] = cam.reconnects >= cam.losses > 0
    sc.checks["parts triggered while the camera was down answered NG/FAULT"] = any(
        r.detail["fault_answers_during"] for r in sc.reps)
    return sc


class FullDisk:
    """Every regular-file write of this process fails with EFBIG, as writes on a full disk fail: RLIMIT_FSIZE
    soft limit 0 with SIGXFSZ ignored (unprivileged; ptys and pipes are not files and keep working)."""

    def __init__(self) -> None:
        import resource

        self._resource = resource
        self._limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        self._handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def fill(self) -> None:
        self._resource.setrlimit(self._resource.RLIMIT_FSIZE, (0, self._limits[1]))

    def free(self) -> None:
        self._resource.setrlimit(self._resource.RLIMIT_FSIZE, self._limits)

    def close(self) -> None:
        self.free()
        signal.signal(signal.SIGXFSZ, self._handler)


def scenario_disk(ctx: Context) -> Scenario:
    from inspector.plc.port import StationState

    sc = Scenario("disk", "disk full on the log folder",
                  "every write of the station process fails with EFBIG (RLIMIT_FSIZE 0, SIGXFSZ ignored) for "
                  f"{'/'.join(f'{h:g}' for h in HOLDS_S)} s (cycled), then space returns; log settings of the "
                  "config (log.required: the station refuses triggers with E05 while it cannot log)")
    try:
        disk = FullDisk()
    except (ImportError, OSError, ValueError, AttributeError) as exc:
        sc.error = f"cannot lower RLIMIT_FSIZE on this platform ({exc}); scenario not run"
        return sc
    sut = ctx.station("disk")
    expected = StationState.FAULT if sut.station.log.required else StationState.READY
    sut.start()
    audit = sut.loop.audit  # the station's log sink: its ``failed`` flag is what the snapshot shows
    try:
        for i in range(ctx.repeat):
            hold = HOLDS_S[i % len(HOLDS_S)]
            _settle(sut)
            t_fault = time.perf_counter()
            disk.fill()
            flagged = _wait(lambda: audit is not None and audit.failed is not None, 5.0)
            detect = time.perf_counter() - t_fault if flagged else None
            snapshot = sut.loop.stats()
            time.sleep(max(0.0, t_fault + hold - time.perf_counter()))
            t_back = time.perf_counter()
            disk.free()
            logging_again = _wait(lambda: audit is not None and audit.failed is None, WAIT_S)
            relog = time.perf_counter() - t_back if logging_again else None
            first = sut.plc.wait_inspected_after(t_back, WAIT_S)
            recovery = None if first is None else first - t_back
            during = [p for p in sut.plc.traces() if t_fault < p.sent_at < t_back]
            unanswered = sum(1 for p in during if p.refused is None and p.ack_at is None)
            ok = (flagged and snapshot.state == expected and bool(snapshot.log.failed) and recovery is not None
                  and recovery < RECOVERY_LIMIT_S)
            sc.reps.append(Rep(i + 1, ok, _r(recovery), {
                "outage_s": hold, "flagged_after_s": _r(detect), "state_during": snapshot.state.value,
                "log_failed_during": (snapshot.log.failed or "")[:160], "logging_again_after_s": _r(relog),
                "triggers_during": len(during), "refused_during": sum(1 for p in during if p.refused),
                "unanswered_during": unanswered}))
            ctx.tick(sc, sc.reps[-1])
    finally:
        disk.close()
        rec, log = _finish(sc, sut)
    gaps = log.events_of("log_gap")
    sc.figures["log_gap_events"] = len(gaps)
    sc.figures["gap_examples"] = [e["what"] for e in gaps[:3]]
    sc.figures["records_not_logged_named_in_log_gap"] = len(rec.gap_named)
    sc.checks["every trigger answered (RES or ERR) while the log was down"] = all(
        r.detail["unanswered_during"] == 0 for r in sc.reps)
    sc.checks["a log_gap event names every unlogged acknowledged part"] = not rec.lost
    sc.checks["logging resumed after every outage"] = all(r.detail["logging_again_after_s"] is not None
                                                          for r in sc.reps)
    return sc


def scenario_checkpoint(ctx: Context) -> Scenario:
    from inspector.station.follow import MODEL_POLL_S
    from inspector.training.deploy import apply_version
    from inspector.training.errors import RegistryError
    from inspector.training.registry import ADAPTER_FILE, ModelRegistry

    kinds = ("garbage", "truncated", "zeroed", "foreign header")
    sc = Scenario("checkpoint", "corrupt adapter checkpoint at promotion",
                  "a registry version's adapter.safetensors is damaged (" + ", ".join(kinds) + ", cycled) and "
                  "promoted (forced, as `inspector models promote --force`) while the station runs a good version: "
                  "the registry must refuse the promotion (it loads the version first); then deployed.json is "
                  "pointed at it anyway (a file damaged after its promotion) and the station's own model follower "
                  f"(polls deployed.json every {MODEL_POLL_S:g} s) must refuse it; "
                  "recovery = deployment -> refusal (`model_error` event)")
    models = ctx.work / "checkpoint" / "models"
    sut = ctx.station("checkpoint", model_dir=str(models))
    inspector = ctx.engines.get(sut.station.line().name)
    registry = ModelRegistry(models, inspector.line.name)
    good = _register_adapter(registry, inspector, "good")
    registry.promote(good.version, who="faults.py", forced=True, reason="fault injection: good version")
    promoted: list[tuple[int, float, str]] = []  # (wall ns, perf s, version)
    sut.start()  # applies the deployed (good) version before the first part
    try:
        if inspector.model_version != good.version:
            sc.error = f"the good version {good.version} was not applied at start (running {inspector.model_version})"
            return sc
        for i in range(ctx.repeat):
            kind = kinds[i % len(kinds)]
            _settle(sut, 0.4)
            bad = _register_adapter(registry, inspector, f"bad-{i}")
            _corrupt(bad.path / ADAPTER_FILE, kind, random.Random(ctx.seed + i))
            # First line of defence: promotion loads the version and refuses a damaged one.
            try:
                registry.promote(bad.version, who="faults.py", forced=True, reason=f"fault injection: {kind}")
                refused_at_promotion = False
            except RegistryError:
                refused_at_promotion = registry.deployed() == good.version
            # Second: a version damaged after its promotion (disk, copy) reaches the station's follower.
            t0 = time.perf_counter()
            promoted.append((time.time_ns(), t0, bad.version))
            _deploy_unchecked(registry, bad.version, f"fault injection: {kind} after promotion")
            time.sleep(MODEL_POLL_S + 0.6)  # one poll of the follower and then some
            answered = [p for p in sut.plc.traces() if p.result_at and t0 < p.result_at]
            gap = _longest_silence(sut.plc.traces(), t0 - 0.5, time.perf_counter())
            ok = refused_at_promotion and inspector.model_version == good.version and all(p.inspected for p in answered)
            sc.reps.append(Rep(i + 1, ok, None, {"damage": kind, "version": bad.version,
                                                 "refused_at_promotion": refused_at_promotion,
                                                 "running": inspector.model_version,
                                                 "answers_after": len(answered), "longest_result_gap_s": _r(gap)}))
            registry.rollback(who="faults.py", reason="fault injection: back to the good version")
            ctx.tick(sc, sc.reps[-1])
    finally:
        _rec, log = _finish(sc, sut)
        apply_version(inspector, registry, "base")  # the shared engine goes back to its base heads
    errors = log.events_of("model_error")
    for rep, (wall_ns, _t0, version) in zip(sc.reps, promoted):
        ev = next((e for e in errors if e["time_ns"] >= wall_ns and version in e["what"]), None)
        rep.detail["error"] = ev["what"][:220] if ev else None
        clear = ev is not None and ("cannot be loaded" in ev["what"] or "not an inspector adapter" in ev["what"]) \
            and f"still running {good.version}" in ev["what"]
        rep.recovery_s = _r((ev["time_ns"] - wall_ns) / 1e9) if ev else None
        rep.passed = rep.passed and clear and rep.recovery_s is not None and rep.recovery_s < RECOVERY_LIMIT_S
    versions = {r["model_version"] for r in log.records.values() if r["part_id"] in sut.decided}
    sc.figures["model_versions_logged"] = sorted(versions)
    sc.figures["model_error_events"] = len(errors)
    sc.checks["no part was judged by a damaged version"] = versions == {good.version}
    sc.checks["every refusal is in the audit log (model_error, naming the file and the running version)"] = all(
        r.detail.get("error") for r in sc.reps)
    sc.notes.append("the station never stopped inspecting: the table gives the longest gap between two results "
                    "around each promotion (the PLC triggers every "
                    f"{1000 / ctx.rate:.0f} ms)")
    return sc


def _deploy_unchecked(registry: Any, version: str, reason: str) -> None:
    """Point deployed.json at ``version`` without the registry's load check (a file damaged after promotion)."""
    data = registry.deployment()
    old = str(data["stack"][-1])
    data["stack"].append(version)
    data["history"].append({"action": "force-promote", "version": version, "previous": old,
                            "at": dt.datetime.now(dt.UTC).isoformat(), "who": "faults.py", "reason": reason})
    registry._write_deployment(data)


def _register_adapter(registry: Any, inspector: Any, tag: str) -> Any:
    """A small valid adapter version (one CLIP-Adapter head) for the running engine."""
    import torch

    from inspector.station.engines import embedding_dim
    from inspector.training.modules import AdapterStack

    classes = ("normal", *inspector.defect_names) if inspector.defect_names else ("normal", "defect")
    dim = embedding_dim(inspector)
    stack = AdapterStack({"clip_adapter": {"dim": dim, "n_classes": len(classes)}}, classes)
    gen = torch.Generator().manual_seed(len(tag))
    with torch.no_grad():
        text = torch.nn.functional.normalize(torch.randn(len(classes), dim, generator=gen), dim=-1)
        stack.heads["clip_adapter"].text.copy_(text)
    stack.set_statistics({"clip_adapter": 1.0}, {"clip_adapter": (0.0, 1.0)})
    metrics = {"deployment": {"score_stats": [0.0, 1.0], "map_stats": None, "threshold": None},
               "gate": {"passed": False, "reasons": ["fault-injection version"], "compared_to": "base"}}
    card = {"backbone": {"key": inspector.model_key}, "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "note": f"benchmarks/faults.py {tag}"}
    return registry.register(stack, metrics, card)


def _corrupt(path: Path, kind: str, rng: random.Random) -> None:
    data = path.read_bytes()
    if kind == "garbage":
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(len(data))))
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zeroed":
        path.write_bytes(b"\0" * len(data))
    else:  # a well-formed safetensors header that is not an adapter's
        header = json.dumps({"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2],
                                                                     "data_offsets": [0, 8]}}).encode()
        path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)


def _longest_silence(traces: list[PartTrace], t0: float, t1: float) -> float:
    times = sorted(p.result_at for p in traces if p.result_at and t0 <= p.result_at <= t1)
    edges = [t0, *times, t1]
    return max(b - a for a, b in itertools.pairwise(edges))


def _process_station(ctx: Context, name: str) -> tuple[Path, Path]:
    """A config for `inspector run` processes of scenario ``name``: the line config, logging to its own folder."""
    work = ctx.work / name
    logs = work / "logs"
    work.mkdir(parents=True, exist_ok=True)
    config = write_yaml({**ctx.data, "log": {**ctx.data.get("log", {}), "folder": str(logs)}}, work / "station.yaml")
    return config, logs


def _match_printed(sc: Scenario, printed: dict[int, tuple[str, str]], logs: Path) -> tuple[Any, list, list, list, int]:
    """Match what station processes printed (published) with their log; counts go into ``sc``.

    Returns the log, printed seqs missing from it, seqs logged with another part / verdict, seqs logged
    twice (part ids may repeat: the demo camera restarts with each process) and holes in the sequence.
    """
    log = read_audit(logs)
    missing = [s for s in printed if s not in log.by_seq]
    wrong = [s for s, (part, verdict) in printed.items()
             if s in log.by_seq and (log.by_seq[s]["part_id"], log.by_seq[s]["verdict"]) != (part, verdict)]
    seq_dups = [d for d in log.duplicates if d.startswith("seq ")]
    sc.acked_lost = len(missing)
    sc.unmatched = len(wrong) + len(seq_dups)
    sc.ok_without_inspection = sum(1 for s, (_p, v) in printed.items() if v == "OK" and s in log.by_seq
                                   and (log.by_seq[s]["fault"] or not math.isfinite(log.by_seq[s]["score"])))
    seqs = sorted(log.by_seq)
    holes = (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else 0
    return log, missing, wrong, seq_dups, holes


def scenario_kill(ctx: Context) -> Scenario:
    sc = Scenario("kill", "kill -9 of the station while it logs, then restart",
                  "`inspector run --headless --plain --trigger free_run --rate 20` on the line config, SIGKILL after "
                  "5-25 published parts (seeded), restarted on the same log folder; the last start ends cleanly "
                  "(--frames 5)")
    config, logs = _process_station(ctx, "kill")
    rng = random.Random(ctx.seed)
    printed: dict[int, tuple[str, str]] = {}
    runs: list[dict[str, Any]] = []
    for i in range(ctx.repeat + 1):
        last = i == ctx.repeat
        stop_after = 5 if last else rng.randint(5, 25)
        run = _station_process(config, logs, logs.parent / f"run{i}.err", stop_after, kill=not last)
        runs.append(run)
        printed.update(run["printed"])
        if i > 0:  # a restart after a kill
            rec = run["start_to_first_s"]
            ok = (rec is not None and rec < RECOVERY_LIMIT_S and run["parts"] >= 1
                  and (run["exit"] == -signal.SIGKILL or last))
            sc.reps.append(Rep(i, ok, _r(rec), {"killed_after_parts": runs[i - 1]["parts"],
                                                "restart_to_first_part_s": _r(run["first_part_s"]),
                                                "process_start_to_station_start_s": _r(run["startup_s"]),
                                                "exit": run["exit"]}))
            ctx.tick(sc, sc.reps[-1])
        if run["error"]:
            sc.error = run["error"]
            break
    log, missing, wrong, seq_dups, holes = _match_printed(sc, printed, logs)
    recovered = log.events_of("log_recovered")
    kills = sum(1 for r in runs if r["exit"] == -signal.SIGKILL)
    sc.figures.update({"printed_parts": len(printed), "logged_records": len(log.by_seq), "files": len(log.files),
                       "log_recovered_events": len(recovered), "seq_holes": holes, "kills": kills,
                       "process_start_to_station_start_s": percentiles(
                           [r["startup_s"] for r in runs[1:] if r["startup_s"]], (50,)),
                       "logged_not_printed": len(log.by_seq) - len(printed)})
    sc.checks["every printed (published) part is in the log, same part id and verdict"] = not missing and not wrong
    sc.checks["every crashed file sealed by the next start (log_recovered event, none left open)"] = (
        len(recovered) == kills and not log.open_files)
    sc.checks["the sequence continues across restarts (no seq logged twice, no holes)"] = not seq_dups and holes == 0
    restart = [r["first_part_s"] for r in runs[1:] if r["first_part_s"]]
    sc.figures["restart_to_first_part_s"] = percentiles(restart, (50,))
    sc.notes.append("recovery here is the station's own: its `station_start` event (line loaded, log opened, the "
                    "crashed file sealed) -> first published part. The whole restart, process start -> first "
                    f"published part, took p50 {percentiles(restart, (50,)).get('p50', math.nan):.1f} s / max "
                    f"{percentiles(restart, (50,)).get('max', math.nan):.1f} s: nearly all of it is the new Python "
                    "process importing torch / open_clip / h5py and loading the line, before the station runs")
    return sc


def scenario_standby(ctx: Context) -> Scenario:
    from inspector.station.process import StationProcess, kill_all

    sc = Scenario("standby", "kill -9 of the station with a warm standby waiting (`inspector run --standby`)",
                  "`inspector run --headless --plain --trigger free_run --rate 20` on the line config, a second one "
                  "with `--standby` loads the line and waits; the active one is SIGKILLed after 5-25 published parts "
                  "(seeded), the standby takes over, a new standby is started for the next repetition; the last "
                  "station is stopped with SIGINT")
    config, logs = _process_station(ctx, "standby")
    rng = random.Random(ctx.seed)
    extra = ("--trigger", "free_run", "--rate", "20")
    printed: dict[int, tuple[str, str]] = {}
    active = StationProcess(config, *extra)
    standby: StationProcess | None = None
    ready_s: list[float] = []
    try:
        active.wait(lambda: len(active.published) >= 1, what="the first part")
        for i in range(1, ctx.repeat + 1):
            standby = StationProcess(config, *extra, "--standby")
            standby.wait(lambda s=standby: s.said("standby ready"), what="standby ready")
            ready_s.append(time.monotonic() - standby.started_at)
            target = len(active.published) + rng.randint(5, 25)
            active.wait(lambda a=active, n=target: len(a.published) >= n, what=f"{target} parts")
            killed_at = time.monotonic()
            active.finish(signal.SIGKILL)
            printed.update(active.published)
            try:
                standby.wait(lambda s=standby: s.first_part_at is not None, timeout=WAIT_S,
                             what="a part from the standby")
            except AssertionError as exc:
                sc.reps.append(Rep(i, False, None, {"error": str(exc)[:300]}))
                ctx.tick(sc, sc.reps[-1])
                break
            rec = standby.first_part_at - killed_at
            sc.reps.append(Rep(i, rec < RECOVERY_LIMIT_S, _r(rec), {"killed_after_parts": len(active.published),
                                                                    "standby_ready_after_s": _r(ready_s[-1])}))
            ctx.tick(sc, sc.reps[-1])
            active, standby = standby, None
        active.wait(lambda: len(active.published) >= 3, what="3 parts")
        if active.finish(signal.SIGINT) != 0:
            sc.error = f"the last station did not stop cleanly: {active.stderr_text[-800:]}"
        printed.update(active.published)
    finally:
        kill_all([active, standby])
    log, missing, wrong, seq_dups, holes = _match_printed(sc, printed, logs)
    takeovers = log.events_of("standby_takeover")
    recovered = log.events_of("log_recovered")
    sc.figures.update({"printed_parts": len(printed), "logged_records": len(log.by_seq), "files": len(log.files),
                       "standby_takeover_events": len(takeovers), "log_recovered_events": len(recovered),
                       "seq_holes": holes, "standby_ready_s": percentiles(ready_s, (50,))})
    sc.checks["every printed (published) part is in the log, same part id and verdict"] = not missing and not wrong
    sc.checks["one standby_takeover event per kill, every crashed file sealed"] = (
        len(takeovers) == len(sc.reps) and len(recovered) == len(sc.reps) and not log.open_files)
    sc.checks["the sequence continues across takeovers (no seq logged twice, no holes)"] = not seq_dups and holes == 0
    sc.notes.append("recovery: SIGKILL of the active station -> first part published by the standby (the whole "
                    "failover, no process start in it); the standby itself needs `standby_ready_s` to load "
                    "before it can take over")
    return sc


def _station_process(config: Path, logs: Path, err_path: Path, stop_after: int, kill: bool) -> dict[str, Any]:
    """One `inspector run` process: read its published parts, SIGKILL it after ``stop_after`` (or let it end)."""
    from inspector.audit.h5log import log_files
    from inspector.audit.reader import AuditReader
    from inspector.station.process import StationProcess

    before = set(log_files(logs))
    extra = ["--trigger", "free_run", "--rate", "20"] + ([] if kill else ["--frames", str(stop_after)])
    t_wall, t0 = time.time(), time.monotonic()
    proc = StationProcess(config, *extra, max_life_s=360)
    error = None
    try:
        proc.wait(lambda: len(proc.published) >= stop_after, timeout=240, what=f"{stop_after} published parts")
    except AssertionError as exc:
        error = str(exc)[:800]
    code = proc.finish(signal.SIGKILL if kill else None)
    err_path.write_text(proc.stderr_text)
    if not kill and code != 0:
        error = error or f"clean run exited {code}: {proc.stderr_text[-800:]}"
    first = None if proc.first_part_at is None else proc.first_part_at - t0
    startup = start_to_first = None
    new = [p for p in log_files(logs) if p not in before]
    if new:
        with AuditReader(new[0]) as reader:
            start = [e for e in reader.events() if e["kind"] == "station_start"]
            if start:
                startup = start[0]["time_ns"] / 1e9 - t_wall
                if first is not None:
                    start_to_first = first - startup
    return {"printed": dict(proc.published), "parts": len(proc.published), "first_part_s": first,
            "startup_s": startup, "start_to_first_s": start_to_first, "exit": code, "error": error}


# ================================================================================================ driver


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.005)
    return True


@dataclass
class Context:
    data: dict[str, Any]
    work: Path
    engines: Any
    repeat: int
    rate: float
    seed: int
    verbose: bool = True

    def station(self, name: str, **kwargs: Any) -> StationUnderTest:
        return StationUnderTest(self.data, self.work / name, self.engines, self.rate, f"{name[:3].upper()}", **kwargs)

    def tick(self, sc: Scenario, rep: Rep) -> None:
        if self.verbose:
            rec = "-" if rep.recovery_s is None else f"{rep.recovery_s:.3f} s"
            print(f"{sc.kind} {rep.index}/{self.repeat}: {'ok' if rep.passed else 'FAILED'}, recovery {rec} "
                  f"{json.dumps(rep.detail, default=str)}", file=sys.stderr, flush=True)


SCENARIOS: dict[str, Callable[[Context], Scenario]] = {
    "serial": scenario_serial, "camera": scenario_camera, "disk": scenario_disk, "kill": scenario_kill,
    "standby": scenario_standby, "checkpoint": scenario_checkpoint,
}


def to_markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Fault injection (benchmarks/faults.py)",
        "",
        f"- date: {res['date']}",
        f"- command: `{res['command']}`",
        f"- machine: {res['machine']['cpu']}, {res['machine']['cores']} CPU cores, {res['machine']['system']}, "
        f"Python {res['machine']['python']}",
        f"- station: `{Path(res['config']).name}` line config with the backbone {res['model']}; scripted PLC at "
        f"{res['rate_hz']:g} triggers/s over a pseudo-terminal (waits for each ACK / ERR); HDF5 audit log with "
        "the config's log settings",
        f"- result: **{'PASS' if res['passed'] else 'FAIL'}** (recovery limit {RECOVERY_LIMIT_S:g} s)",
        "",
        "| fault | repetitions passed | recovery p50 s | recovery max s | acknowledged records lost | "
        "OK without inspection | unmatched | protocol violations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in res["scenarios"]:
        rec = s["recovery_s"]
        plc = s["kind"] not in NO_PLC
        lost, violations = (s["acked_lost"], len(s["violations"])) if plc else ("- (no PLC)", "- (no PLC)")
        lines.append(f"| {s['kind']}: {s['title']} | {s['repetitions_passed']} / {s['repetitions']} | "
                     f"{rec.get('p50', math.nan):.3f} | {rec.get('max', math.nan):.3f} | {lost} | "
                     f"{s['ok_without_inspection']} | {s['unmatched']} | {violations} |")
    if any(s["kind"] in NO_PLC for s in res["scenarios"]):
        lines += ["", "kill / standby run `inspector run` processes in free run without a PLC: nothing is acknowledged "
                  "and no protocol is spoken, so those two columns do not apply; what is checked instead is listed "
                  "under each (every published part in the log with its part id and verdict, no seq hole). For "
                  "them, OK without inspection = published OK whose record is a fault; unmatched = published parts "
                  "logged with another part id or verdict, plus seqs logged twice."]
    for s in res["scenarios"]:
        lines += ["", f"## {s['kind']}: {s['title']}", "", f"How: {s['how']}.", ""]
        if s["error"]:
            lines.append(f"**Not completed:** {s['error']}")
        lines += [f"- [{'x' if ok else ' '}] {name}" for name, ok in s["checks"].items()]
        lines += [f"- {note}" for note in s["notes"]]
        lines.append(f"- figures: `{json.dumps(s['figures'], default=str)}`")
        if s["violations"]:
            lines.append(f"- protocol violations: {s['violations'][:5]}")
        if s["reps"]:
            keys = [k for k in s["reps"][0] if k not in ("index", "passed", "recovery_s", "error")]
            lines += ["", "| rep | passed | recovery s | " + " | ".join(keys) + " |",
                      "|---:|---|---:|" + "---|" * len(keys)]
            for r in s["reps"]:
                lines.append(f"| {r['index']} | {'yes' if r['passed'] else 'NO'} | {r['recovery_s']} | "
                             + " | ".join(str(r.get(k)) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=DEMO_CONFIG, help="station config (default: the demo line)")
    ap.add_argument("--model", default=None, help="open_clip architecture replacing the line's backbone "
                                                  "(random weights), e.g. inspector-tiny-vit")
    ap.add_argument("--image-size", type=int, default=None, help="input size with --model (default: the model's own)")
    ap.add_argument("--repeat", type=int, default=20, help="repetitions of each fault (default 20)")
    ap.add_argument("--only", action="append", choices=KINDS, help="run only this scenario (repeatable)")
    ap.add_argument("--rate", type=float, default=20.0, help="PLC triggers per second (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the scripted choices (kill points, damage bytes)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results",
                    help="where faults.md and faults.json go ('-': print only)")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="only write the markdown report of an earlier run's faults.json (next to it), no run")
    args = ap.parse_args(argv)
    if args.render:
        res = json.loads(args.render.read_text(encoding="utf-8"))
        args.render.with_suffix(".md").write_text(to_markdown(res), encoding="utf-8")
        print(f"written to {args.render.with_suffix('.md')}", file=sys.stderr)
        return 0
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started in the background by a non-interactive shell: SIGINT is ignored and the station processes
        # would inherit that, so the scenarios' clean SIGINT stop could not stop them. Children get the default.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    import torch

    from inspector.config import parse_station_config
    from inspector.station.engines import EngineCache

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    kinds = [k for k in KINDS if not args.only or k in args.only]
    data = station_dict(args.config, args.model, args.image_size)
    results: list[Scenario] = []
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        work = Path(tmp)
        base = parse_station_config({**data, "log": {**data.get("log", {}), "folder": str(work / "unused")}})
        engines = EngineCache(base)
        if any(k not in ("kill", "standby") for k in kinds):
            engines.get(base.line().name)  # load and fit the line once for the in-process scenarios
        ctx = Context(data, work, engines, args.repeat, args.rate, args.seed)
        for kind in kinds:
            t0 = time.perf_counter()
            try:
                sc = SCENARIOS[kind](ctx)
            except Exception as exc:  # a broken scenario is a failed one, reported with the others
                import traceback

                traceback.print_exc()
                sc = Scenario(kind, kind, "", error=f"{type(exc).__name__}: {exc}")
            sc.seconds = time.perf_counter() - t0
            results.append(sc)
            print(f"{kind}: {'PASS' if sc.passed else 'FAIL'} in {sc.seconds:.0f} s", file=sys.stderr, flush=True)
    res = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
                    "python": platform.python_version()},
        "config": str(args.config), "model": describe_model(data), "rate_hz": args.rate, "repeat": args.repeat,
        "passed": all(s.passed for s in results), "scenarios": [s.as_dict() for s in results],
    }
    text = to_markdown(res)
    print(text)
    if str(args.out_dir) != "-":
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "faults.md").write_text(text, encoding="utf-8")
        (args.out_dir / "faults.json").write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"written to {args.out_dir / 'faults.md'} and faults.json", file=sys.stderr)
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
