"""Shift counters: which shift it is, and the OK / NG / not-inspected counts since it started (pure, no I/O).

The shifts are the station config's ``shifts`` start times (local wall clock). The counters of the current
shift are what the audit log held for it when the application started (the caller counts the log's rows
since the shift's start: the log stays the record of truth, there is no counter file that could disagree)
plus what this process inspected since; at a shift boundary they start again from 0.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inspector.config.shifts import ShiftSpec
from inspector.decision.result import VerdictCounts


@dataclass(frozen=True)
class ShiftCounts(VerdictCounts):
    """Parts of the current shift (``shift``: its label, ``since_ns``: its start, UTC ns; empty for a plain tally)."""

    parts: int = 0
    ok: int = 0
    ng: int = 0
    faults: int = 0
    shift: str = ""
    since_ns: int = 0

    def __add__(self, other: ShiftCounts) -> ShiftCounts:
        return ShiftCounts(self.parts + other.parts, self.ok + other.ok, self.ng + other.ng,
                           self.faults + other.faults, self.shift or other.shift, self.since_ns or other.since_ns)

    def __sub__(self, other: ShiftCounts) -> ShiftCounts:
        return ShiftCounts(self.parts - other.parts, self.ok - other.ok, self.ng - other.ng,
                           self.faults - other.faults, self.shift, self.since_ns)


@dataclass(frozen=True)
class Shift:
    """One occurrence of a shift: its name and its start and end (aware datetimes)."""

    name: str
    start: dt.datetime
    end: dt.datetime

    @property
    def start_ns(self) -> int:
        return _ns(self.start)

    @property
    def end_ns(self) -> int:
        return _ns(self.end)

    @property
    def label(self) -> str:
        """``"late · since 14:00"``."""
        return f"{self.name} · since {self.start.strftime('%H:%M')}"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _ns(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(microseconds=1) * 1000


def _aware(wall: dt.datetime, tz: dt.tzinfo | None) -> dt.datetime:
    """A local wall-clock time as an aware datetime (``tz`` None: the system's zone, daylight saving included)."""
    return wall.astimezone() if tz is None else wall.replace(tzinfo=tz)


def shift_names(specs: Sequence[ShiftSpec]) -> list[str]:
    """Each shift's name: its own, else "shift N" by start time (one shift a day: "day")."""
    if len(specs) == 1 and not specs[0].name:
        return ["day"]
    return [s.name or f"shift {i + 1}" for i, s in enumerate(specs)]


def current_shift(specs: Sequence[ShiftSpec], now: dt.datetime, tz: dt.tzinfo | None = None) -> Shift:
    """The shift ``now`` (aware) falls in: the latest start at or before it, ending at the next start.

    Start times are wall-clock times in ``tz`` (None: the system's local zone), so a shift that spans a
    daylight-saving change is an hour shorter or longer, as on the line.
    """
    if not specs:
        msg = "no shifts configured"
        raise ValueError(msg)
    ordered = sorted(zip(shift_names(specs), specs, strict=True), key=lambda p: p[1].minute)
    wall_now = now.astimezone(tz).replace(tzinfo=None) if tz is not None else now.astimezone().replace(tzinfo=None)
    day0 = wall_now.date()
    starts = [(dt.datetime.combine(day0 + dt.timedelta(days=d), dt.time(s.minute // 60, s.minute % 60)), name)
              for d in (-1, 0, 1) for name, s in ordered]
    k = max(i for i, (wall, _) in enumerate(starts) if wall <= wall_now)
    (start, name), (end, _) = starts[k], starts[k + 1]
    return Shift(name, _aware(start, tz), _aware(end, tz))


class ShiftTally:
    """The current shift's counters from the process's running totals (see the module doc).

    ``logged(since_ns)`` counts the audit log's parts from that time on (called once, at construction, before
    this process inspects anything); ``counts(total)`` takes the process's totals since construction and
    returns the shift's, starting a new shift (from 0) once the clock passes the current one's end.
    """

    def __init__(self, specs: Sequence[ShiftSpec], logged: Callable[[int], ShiftCounts],
                 clock: Callable[[], float] = time.time, tz: dt.tzinfo | None = None) -> None:
        self.specs = tuple(specs)
        self.clock = clock
        self.tz = tz
        self._lock = threading.Lock()  # the status poller and the GUI thread both ask
        self.shift = self._current()
        self._base = logged(self.shift.start_ns)  # parts of this shift logged before this process started
        self._offset = ShiftCounts()  # the process's totals when the shift began (0: it began before us)

    def _current(self) -> Shift:
        return current_shift(self.specs, dt.datetime.fromtimestamp(self.clock(), dt.UTC), self.tz)

    def counts(self, total: ShiftCounts) -> ShiftCounts:
        """The shift's counters given the process's totals now (label and start filled in)."""
        with self._lock:
            if self.clock() >= self.shift.end.timestamp():  # a boundary passed: a new count
                self.shift = self._current()
                self._base = ShiftCounts()
                self._offset = total
            counted = self._base + (total - self._offset)
            shift = self.shift
        return ShiftCounts(counted.parts, counted.ok, counted.ng, counted.faults, shift.label, shift.start_ns)
