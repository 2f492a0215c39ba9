"""Background work for the GUI: one-off tasks, the status poller and the display feed.

Rules (see ../shared/STYLE.md, napari's StatusChecker): capture and inspection run in the station's own
threads, never here and never on the GUI thread; every worker catches every exception and reports it
as a signal instead of dying; a worker stops by flag + event. The display feed keeps only the newest
frame for the screen, so a slow GUI drops display frames, never inspections.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PySide6.QtCore import QObject, QThread, Signal

from inspector.decision.overlay import colorize
from inspector.decision.result import Region

if TYPE_CHECKING:  # the station (torch, open_clip) is not imported by the workers: the History viewer runs without it
    from inspector.station.handle import ShiftCounts, StationHandle
    from inspector.station.plant_links import LinkState
    from inspector.station.results import StationResult
    from inspector.station.stats import LoopStats

_logger = logging.getLogger(__name__)

# Workers alive (started, not finished): referenced here so Python never collects a running QThread,
# and so tests can check that none is left behind.
_LIVE: set[QThread] = set()
_LIVE_LOCK = threading.Lock()


def live_workers() -> list[QThread]:
    with _LIVE_LOCK:
        return list(_LIVE)


def _track(worker: QThread) -> None:
    with _LIVE_LOCK:
        _LIVE.add(worker)

    def forget() -> None:
        with _LIVE_LOCK:
            _LIVE.discard(worker)

    worker.finished.connect(forget)


class TaskWorker(QThread):
    """Runs ``fn(*args, progress=..., cancel=...)`` once on its own thread; reports, never raises.

    ``fn`` receives ``progress`` (a callable emitting :attr:`progress`) and ``cancel`` (a
    ``threading.Event``) when it accepts them as keywords (``pass_control=True``).
    """

    progress = Signal(object)
    done = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "task", pass_control: bool = False,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self._fn = fn
        self._args = args
        self._pass_control = pass_control
        self.cancel = threading.Event()
        self.error: str | None = None
        self.result: Any = None

    def run(self) -> None:
        try:
            if self._pass_control:
                self.result = self._fn(*self._args, progress=self.progress.emit, cancel=self.cancel)
            else:
                self.result = self._fn(*self._args)
        except Exception as exc:  # report, never die: the GUI shows it
            _logger.exception("%s failed", self.objectName())
            self.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.failed.emit(self.error)
            return
        self.done.emit(self.result)


def run_task(fn: Callable[..., Any], *args: Any, name: str = "task", on_done: Callable[[Any], None] | None = None,
             on_error: Callable[[str], None] | None = None, on_progress: Callable[[Any], None] | None = None,
             pass_control: bool = False) -> TaskWorker:
    """Start a :class:`TaskWorker` (kept alive until it finishes) with its callbacks connected."""
    worker = TaskWorker(fn, *args, name=name, pass_control=pass_control)
    if on_done is not None:
        worker.done.connect(on_done)
    if on_error is not None:
        worker.failed.connect(on_error)
    if on_progress is not None:
        worker.progress.connect(on_progress)
    _track(worker)
    worker.finished.connect(worker.deleteLater)
    worker.start()
    return worker


def wait_workers(timeout_s: float = 30.0) -> bool:
    """Wait for every task to finish (application exit, tests); False if some are still running."""
    deadline = time.monotonic() + timeout_s
    for worker in live_workers():
        worker.cancel.set() if isinstance(worker, TaskWorker) else None
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        try:
            worker.wait(left_ms)
        except RuntimeError:  # already deleted on the C++ side: it has finished
            continue
    return not any(_running(w) for w in live_workers())


def _running(worker: QThread) -> bool:
    try:
        return worker.isRunning()
    except RuntimeError:
        return False


# ------------------------------------------------------------------------------------ status
@dataclass
class StationSnapshot:
    """What the header and counters show, read off the GUI thread."""

    running: bool
    line: str
    stats: LoopStats | None
    counts: ShiftCounts
    plc: tuple[str, str]
    error: str = ""
    time: float = field(default_factory=time.time)
    links: tuple[LinkState, ...] = ()  # the plant links of the YAML's outputs (MQTT, OPC UA, database)
    paused: bool = False  # running but refusing triggers on command (OPC UA Stop)


class StatusPoller(QThread):
    """Reads the station's figures every ``interval_s`` and emits them (napari StatusChecker pattern)."""

    snapshot = Signal(object)

    def __init__(self, handle: StationHandle, interval_s: float = 0.5, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("status-poller")
        self._handle = weakref.ref(handle)
        self._interval = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            handle = self._handle()
            if handle is None:
                return
            try:
                snap = StationSnapshot(handle.running, handle.line, handle.stats(), handle.counts(),
                                       handle.plc_state(), links=tuple(handle.link_states()), paused=handle.paused)
            except Exception as exc:  # report, keep polling
                _logger.exception("status poll failed")
                from inspector.station.handle import ShiftCounts  # (the poller runs in the station's GUI only)

                snap = StationSnapshot(False, "", None, ShiftCounts(), ("?", ""), f"{type(exc).__name__}: {exc}")
            del handle
            self.snapshot.emit(snap)
            self._wake.wait(self._interval)
            self._wake.clear()

    def poke(self) -> None:
        """Poll now (after a start, stop or changeover)."""
        self._wake.set()

    def start(self, *args: Any) -> None:  # type: ignore[override]
        _track(self)
        super().start(*args)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.wait(5000)


# ------------------------------------------------------------------------------------ display
@dataclass
class DisplayItem:
    """One published part and what only the screen needs: a thumbnail (NG parts) and, when painted, the heat layer.

    The part's values are read from the StationResult (and its InspectionResult), never copied.
    """

    part: StationResult
    thumb: np.ndarray | None = None  # RGB uint8, set for NG parts
    region_threshold: float = float("nan")  # the engine's map level where a defect region starts
    _heat: np.ndarray | None = field(default=None, repr=False)

    @property
    def verdict(self) -> str:
        """OK | NG | FAULT (a part that was not inspected shows FAULT)."""
        return "FAULT" if self.part.fault else self.part.verdict.verdict

    @property
    def heat(self) -> np.ndarray | None:
        """RGBA heat layer over the ROI at the engine's region threshold, made on first use (only parts that
        are painted pay for it)."""
        if self._heat is None and self.anomaly_map is not None:
            self._heat = heat_rgba(self.anomaly_map, self.region_threshold)
        return self._heat

    # Read-through to the part: what the operator and engineer views paint.
    @property
    def seq(self) -> int:
        return self.part.seq

    @property
    def part_id(self) -> str:
        return self.part.part_id

    @property
    def line(self) -> str:
        return self.part.line

    @property
    def time_ns(self) -> int:
        return self.part.time_ns

    @property
    def frame(self) -> np.ndarray | None:
        """RGB uint8"""
        return self.part.frame

    @property
    def score(self) -> float:
        return self.part.verdict.score

    @property
    def defect(self) -> str | None:
        return self.part.verdict.defect

    @property
    def fault(self) -> str | None:
        return self.part.fault

    @property
    def untrained(self) -> bool:
        return self.part.model.untrained

    @property
    def model_version(self) -> str:
        return self.part.model.version

    @property
    def threshold(self) -> float:
        return r.threshold if (r := self.part.result) is not None else float("nan")

    @property
    def confidence(self) -> float | None:
        return r.defect_confidence if (r := self.part.result) is not None else None

    @property
    def anomaly_map(self) -> np.ndarray | None:
        """float [h, w] over the ROI"""
        return r.anomaly_map if (r := self.part.result) is not None else None

    @property
    def roi(self) -> tuple[int, int, int, int] | None:
        return tuple(r.roi) if (r := self.part.result) is not None else None  # type: ignore[return-value]

    @property
    def regions(self) -> list[Region]:
        return list(r.regions) if (r := self.part.result) is not None else []


def heat_scale(level: float) -> tuple[float, float]:
    """The fixed colour range around the region threshold ``level``: blue at level - d, red at level + d."""
    d = max(abs(level), 1e-3)
    return level - d, level + d


def heat_rgba(anomaly_map: np.ndarray, level: float) -> np.ndarray:
    """Anomaly map -> RGBA (jet) in fixed units around ``level`` (the region threshold, where a region starts).

    Colours mean the same on every part (not stretched to each map's own range), and values well below the
    level are transparent: an OK part is not washed in colour that reads like a defect. Without a level
    (nan) the map's own range is used and only its lower half is hidden.
    """
    amap = np.asarray(anomaly_map, np.float32)
    if np.isfinite(level):
        low, high = heat_scale(level)
        ref = level
    else:
        low, high = float(np.nanmin(amap)), float(np.nanmax(amap))
        ref = high
    rgb = colorize(amap, low, high)
    start = low + 0.5 * (ref - low)  # transparent up to halfway to the level, opaque at it
    alpha = np.clip((amap - start) / max(ref - start, 1e-9), 0.0, 1.0) * 210
    return np.dstack([rgb, alpha.astype(np.uint8)])


def make_display_item(sr: StationResult, thumb_px: int = 160, region_threshold: float = float("nan")) -> DisplayItem:
    """Cheap: a reference to the part, a thumbnail for NG parts; the heat layer is made when painted."""
    thumb = None
    if (sr.fault or not sr.ok) and sr.frame is not None:
        h, w = sr.frame.shape[:2]
        s = thumb_px / max(h, w)
        thumb = cv2.resize(sr.frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return DisplayItem(sr, thumb, region_threshold=region_threshold)


class DisplayFeed(QObject):
    """Observer of the station -> GUI: keeps the newest part (and every NG) and signals once per batch.

    ``push`` runs on the station's observer thread; ``take`` on the GUI thread. While the GUI has not
    taken the last update, newer parts overwrite it: display frames are dropped, inspections never.
    """

    updated = Signal()

    def __init__(self, ng_keep: int = 24, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: DisplayItem | None = None
        self._ng: deque[DisplayItem] = deque(maxlen=ng_keep)
        self._pending = False
        self.pushed = 0
        self.shown = 0
        self.errors = 0
        # The engine's region threshold for the heat colours (read on the observer thread: an attribute read).
        self.region_level: Callable[[], float] = lambda: float("nan")

    @property
    def dropped(self) -> int:
        """Parts published but never painted (the GUI was busy)."""
        return max(0, self.pushed - self.shown)

    def push(self, sr: StationResult) -> None:
        try:
            item = make_display_item(sr, region_threshold=self.region_level())
        except Exception:  # a bad frame must not stop the feed
            self.errors += 1
            _logger.exception("display item for part %s failed", sr.part_id)
            return
        with self._lock:
            self.pushed += 1
            self._latest = item
            if item.verdict != "OK":
                self._ng.append(item)
            emit = not self._pending
            self._pending = True
        if emit:
            self.updated.emit()

    def take(self) -> tuple[DisplayItem | None, list[DisplayItem]]:
        """The newest part and the NG parts since the last take."""
        with self._lock:
            item, ngs = self._latest, list(self._ng)
            self._ng.clear()
            self._pending = False
            if item is not None:
                self.shown += 1
            self._latest = None
        return item, ngs
