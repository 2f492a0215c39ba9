"""Counters and rolling figures of a running station (what the dashboard and GUI show)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inspector.decision.result import VerdictCounts
from inspector.plc.port import StationState
from inspector.station.sinks import SinkStats

if TYPE_CHECKING:
    from inspector.station.results import ModelStamp
    from inspector.station.sinks import AuditSink
    from inspector.station.sources import Camera

RATE_WINDOW_S = 10.0
LATENCY_WINDOW = 256


@dataclass
class CameraStats:
    label: str
    connected: bool
    frames: int
    bad_frames: int
    losses: int
    reconnects: int
    last_error: str
    retry_in_s: float


@dataclass
class LogStats:
    enabled: bool
    path: str  # the file being written (the folder when none is open)
    published: int
    failed: str | None
    write_ms_p50: float
    write_ms_p95: float
    files: list[str] = field(default_factory=list)  # files written by this run
    recovered_files: list[str] = field(default_factory=list)


@dataclass
class LoopStats(VerdictCounts):
    """A consistent snapshot; every field is a plain value."""

    state: StationState
    detail: str
    station: str
    line: str
    model: str
    model_version: str
    untrained: bool
    trigger_mode: str
    uptime_s: float
    parts: int
    ok: int
    ng: int
    faults: int
    last_seq: int
    rate_fps: float  # parts per second over the last RATE_WINDOW_S
    latency_ms: dict[str, float]  # trigger -> verdict: p50 / p95 / max over the last parts
    stage_ms: dict[str, float]  # mean per stage over the last parts
    drops: dict[str, int]  # reason -> count (never silent)
    rejected: dict[str, int]  # E04 / E05 -> count
    defects: dict[str, int]
    camera: CameraStats
    log: LogStats
    sinks: list[SinkStats]
    mutual: str = ""  # the mutual head's buffer on this line (warming up / on), "" when the line has none


class Tally:
    """Thread-safe counters fed by the inspection thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.parts = self.ok = self.ng = self.faults = 0
        self.last_seq = 0
        self.drops: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.defects: Counter[str] = Counter()
        self._times: deque[float] = deque()
        self._latency: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._stages: deque[dict[str, float]] = deque(maxlen=LATENCY_WINDOW)

    def count(self, verdict: str, fault: bool, defect: str | None, seq: int, timings: dict[str, float]) -> None:
        now = time.monotonic()
        with self._lock:
            self.parts += 1
            self.last_seq = seq
            if fault:
                self.faults += 1
            elif verdict == "OK":
                self.ok += 1
            else:
                self.ng += 1
                self.defects[defect or "anomaly"] += 1
            self._times.append(now)
            while self._times and now - self._times[0] > RATE_WINDOW_S:
                self._times.popleft()
            if "total" in timings:
                self._latency.append(timings["total"])
            if not fault:
                self._stages.append(timings)

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.drops[reason] += n

    def reject(self, code: str) -> None:
        with self._lock:
            self.rejected[code] += 1

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._times if now - t <= RATE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-6) if now - recent[0] < RATE_WINDOW_S else RATE_WINDOW_S
        return len(recent) / span

    def latency(self) -> dict[str, float]:
        with self._lock:
            values = np.array(self._latency)
        if not values.size:
            return {}
        return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
                "max": float(values.max())}

    def stage_means(self) -> dict[str, float]:
        with self._lock:
            rows = list(self._stages)
        names: dict[str, list[float]] = {}
        for row in rows:
            for k, v in row.items():
                names.setdefault(k, []).append(v)
        return {k: float(np.mean(v)) for k, v in names.items()}


def camera_stats(cam: Camera) -> CameraStats:
    return CameraStats(cam.label, cam.connected, cam.frames, cam.bad_frames, cam.losses, cam.reconnects,
                       cam.last_error, cam.retry_in())


def log_stats(audit: AuditSink | None, folder: Path) -> LogStats:
    """The audit log's figures (``audit`` None: the run does not log)."""
    if audit is None:
        return LogStats(enabled=False, path="", published=0, failed=None, write_ms_p50=0.0, write_ms_p95=0.0)
    write_ms = audit.write_percentiles()
    return LogStats(
        enabled=True,
        path=str(audit.writer.path or folder),
        published=audit.published,
        failed=audit.failed,
        write_ms_p50=write_ms[0],
        write_ms_p95=write_ms[1],
        files=[str(p) for p in audit.writer.files],
        recovered_files=[p.name for p in audit.writer.recovered],
    )


def loop_stats(*, state: StationState, detail: str, station: str, line: str, model: ModelStamp,
               trigger_mode: str, uptime_s: float, tally: Tally, camera: CameraStats, log: LogStats,
               sinks: list[SinkStats]) -> LoopStats:
    """One snapshot of a running station from its parts' figures."""
    t = tally
    return LoopStats(
        state=state,
        detail=detail,
        station=station,
        line=line,
        model=model.label,
        model_version=model.version,
        untrained=model.untrained,
        trigger_mode=trigger_mode,
        uptime_s=uptime_s,
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
        camera=camera,
        log=log,
        sinks=sinks,
    )
