"""Which camera frame belongs to which trigger: pure logic over frame times, no device, no threads.

Times are host ``time.perf_counter()`` seconds. A frame's time is its camera timestamp mapped onto
that clock (:class:`ClockMap`, from a latched camera time) when the camera has timestamps, else the
moment the host received it.

* **Triggered camera** (software / hardware trigger: one frame per part). Frames and triggers are
  paired in order, and the pairing is checked by time: a frame more than ``early`` before the
  trigger belongs to no waiting part (an *extra* frame, recorded and dropped); a frame more than
  ``late`` after it belongs to a later part, so this part's frame is *missing* (a fault for this
  part, the frame stays for the next one). Either way no part is ever judged on a neighbour's frame.
* **Free-running camera**: a part gets the first frame whose time is at or after its trigger;
  older frames are simply superseded. When that frame is more than ``late`` after the trigger (the
  frames right after it were overwritten while the station was busy), the part's frame is *missing*.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

# GigE Vision 1.x block ids are 16 bit and skip 0 when they wrap (65535 -> 1).
_GEV16 = 0xFFFF


@dataclass(frozen=True)
class GrabbedFrame:
    """One buffer as the reader took it from the producer, before conversion."""

    data: object  # the converted RGB image (or whatever the source hands on)
    frame_id: int | None  # the camera's own frame / block id
    camera_ns: int | None  # the camera's timestamp in ns (its own clock); None when it has none
    received: float  # host perf_counter seconds when the buffer was fetched
    t: float  # best estimate of the exposure time on the host clock (see ClockMap)


class Pick(enum.Enum):
    MATCH = "match"  # the frame of this trigger
    WAIT = "wait"  # no candidate yet
    MISSING = "missing"  # the next frame belongs to a later part: this part's frame never came


@dataclass
class Picked:
    outcome: Pick
    frame: GrabbedFrame | None = None
    extras: tuple[GrabbedFrame, ...] = ()  # frames dropped as belonging to no part (triggered mode)


class FrameMatcher:
    """The frames received and not yet claimed, oldest first; ``capacity`` bounds memory."""

    def __init__(self, triggered: bool, early_s: float, late_s: float, capacity: int = 16) -> None:
        self.triggered = triggered
        self.early_s = early_s
        self.late_s = late_s
        self._frames: deque[GrabbedFrame] = deque()
        self._capacity = capacity
        self.overflow = 0  # frames pushed out unclaimed (triggered: extras; free-run: normal turnover)

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, frame: GrabbedFrame) -> GrabbedFrame | None:
        """Keep a received frame; returns the oldest one when it had to make room (unclaimed)."""
        self._frames.append(frame)
        if len(self._frames) > self._capacity:
            self.overflow += 1
            return self._frames.popleft()
        return None

    def pick(self, trigger_t: float) -> Picked:
        """The frame of the trigger accepted at ``trigger_t`` (see the module doc for the rules)."""
        if not self.triggered:
            while self._frames and self._frames[0].t < trigger_t:
                self._frames.popleft()
            if not self._frames:
                return Picked(Pick.WAIT)
            if self._frames[0].t > trigger_t + self.late_s:
                return Picked(Pick.MISSING)  # the frame is kept: it may be a later trigger's
            return Picked(Pick.MATCH, self._frames.popleft())
        extras: list[GrabbedFrame] = []
        while self._frames:
            first = self._frames[0]
            if first.t < trigger_t - self.early_s:
                extras.append(self._frames.popleft())
                continue
            if first.t <= trigger_t + self.late_s:
                return Picked(Pick.MATCH, self._frames.popleft(), tuple(extras))
            return Picked(Pick.MISSING, None, tuple(extras))
        return Picked(Pick.WAIT, None, tuple(extras))

    def clear(self) -> None:
        self._frames.clear()


def frame_gap(previous: int | None, current: int | None) -> int:
    """Frames lost between two consecutive frame ids (0: continuous, unknown, or the camera restarted)."""
    if previous is None or current is None:
        return 0
    if current > previous:
        return current - previous - 1
    if previous > _GEV16 - 64 and previous <= _GEV16 and current < 64:  # a 16-bit id wrapped (0 is skipped)
        return (_GEV16 - previous) + (current - 1)
    return 0  # a reset (power cycle, acquisition restart): the ids start again


class ClockMap:
    """Camera timestamps (ns, the camera's clock) onto the host's perf_counter seconds.

    One sample = host time before, the camera's latched time, host time after: the offset is taken at
    the midpoint; samples with a long round trip are less certain, so a newer sample only replaces the
    current one when it is as tight or the current one is old (drift).
    """

    def __init__(self, max_age_s: float = 30.0) -> None:
        self.offset_s: float | None = None  # host - camera
        self.uncertainty_s = float("inf")
        self._at = float("-inf")
        self._max_age = max_age_s

    def sync(self, host_before: float, camera_ns: int, host_after: float) -> None:
        half = max(0.0, host_after - host_before) / 2.0
        if self.offset_s is None or half <= self.uncertainty_s or host_after - self._at > self._max_age:
            self.offset_s = host_before + half - camera_ns / 1e9
            self.uncertainty_s = half
            self._at = host_after

    def due(self, now: float, every_s: float) -> bool:
        """Whether a new sample should be taken (none yet, or the last is ``every_s`` old)."""
        return now - self._at >= every_s

    def to_host(self, camera_ns: int | None) -> float | None:
        if camera_ns is None or self.offset_s is None:
            return None
        return camera_ns / 1e9 + self.offset_s
