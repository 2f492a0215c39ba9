"""Exactly one verdict per accepted trigger: station verdict, TIMEOUT, or FAULT at shutdown."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest

from inspector.plc.port import PartVerdict, StationState, StationStatus, TriggerRejected
from inspector.plc.tracker import TriggerTracker


class ScriptedPort:
    """StationPort whose submit_trigger runs a script (reply now, later, twice, raise ...)."""

    def __init__(self, script: Callable[[str, Callable[[PartVerdict], None]], None]) -> None:
        self.script = script

    def submit_trigger(self, part_id: str, reply: Callable[[PartVerdict], None]) -> None:
        self.script(part_id, reply)

    def status(self) -> StationStatus:
        return StationStatus(StationState.READY, "ring", "v1")

    def changeover(self, line: str) -> None: ...

    def line_names(self) -> tuple[str, ...]:
        return ("ring",)

    def log_event(self, kind: str, who: str, what: str, old: object = "", new: object = "") -> None: ...


class Inbox:
    def __init__(self) -> None:
        self.items: list[PartVerdict] = []
        self.cond = threading.Condition()

    def __call__(self, verdict: PartVerdict) -> None:
        with self.cond:
            self.items.append(verdict)
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.items) >= count, timeout)


def ok(part_id: str) -> PartVerdict:
    return PartVerdict(part_id, "OK", 0.1, None)


@pytest.fixture
def make_tracker():
    trackers: list[TriggerTracker] = []

    def make(script, timeout_s: float = 1.0) -> TriggerTracker:
        tracker = TriggerTracker(ScriptedPort(script), timeout_s)
        tracker.start()
        trackers.append(tracker)
        return tracker

    yield make
    for tracker in trackers:
        tracker.stop()


def test_a_verdict_is_held_until_release(make_tracker) -> None:
    inbox = Inbox()
    tracker = make_tracker(lambda pid, reply: reply(ok(pid)))  # answers inside submit (before the ACK)
    ticket = tracker.submit("A", inbox)
    assert inbox.items == []
    tracker.release(ticket)
    assert inbox.items == [ok("A")]


def test_double_reply_is_dropped(make_tracker) -> None:
    inbox = Inbox()

    def twice(pid, reply):
        reply(ok(pid))
        reply(PartVerdict(pid, "NG", 0.9, "dent"))

    tracker = make_tracker(twice)
    tracker.release(tracker.submit("A", inbox))
    assert inbox.items == [ok("A")]
    assert tracker.stats.late_dropped == 1 and tracker.stats.answered == 1


def test_timeout_then_late_verdict_is_dropped(make_tracker) -> None:
    inbox, replies = Inbox(), []
    tracker = make_tracker(lambda pid, reply: replies.append(reply), timeout_s=0.05)
    tracker.release(tracker.submit("A", inbox))
    assert inbox.wait(1)
    assert inbox.items[0].defect == "TIMEOUT" and inbox.items[0].verdict == "NG"
    replies[0](ok("A"))  # the station finally answers
    assert len(inbox.items) == 1
    assert tracker.stats.timeouts == 1 and tracker.stats.late_dropped == 1


def test_a_timeout_is_recorded_in_the_station_audit_log() -> None:
    """The line acted on TIMEOUT: the station's log must say so, not only hold the later verdict."""
    events: list[tuple] = []

    class LoggingPort(ScriptedPort):
        def log_event(self, kind: str, who: str, what: str, old: object = "", new: object = "") -> None:
            events.append((kind, who, what, new))

    replies: list = []
    tracker = TriggerTracker(LoggingPort(lambda pid, reply: replies.append(reply)), 0.05)
    tracker.start()
    try:
        inbox = Inbox()
        tracker.release(tracker.submit("P42", inbox))
        assert inbox.wait(1) and inbox.items[0].defect == "TIMEOUT"
    finally:
        tracker.stop()
    assert [(k, w) for k, w, _, _ in events] == [("plc_timeout", "plc")]
    assert "P42" in events[0][2] and events[0][3] == {"part_id": "P42", "deadline_ms": 50}


def test_wrong_part_id_from_the_station_becomes_a_fault(make_tracker) -> None:
    inbox = Inbox()
    tracker = make_tracker(lambda pid, reply: reply(ok("someone-else")))
    tracker.release(tracker.submit("A", inbox))
    assert inbox.items[0].part_id == "A" and inbox.items[0].defect == "FAULT"


def test_rejections_pass_through_and_station_errors_become_e05(make_tracker) -> None:
    def full(pid, reply):
        raise TriggerRejected("E04", "queue full")

    with pytest.raises(TriggerRejected) as info:
        make_tracker(full).submit("A", Inbox())
    assert info.value.code == "E04"

    def broken(pid, reply):
        raise KeyError("bug")

    with pytest.raises(TriggerRejected) as info:
        make_tracker(broken).submit("A", Inbox())
    assert info.value.code == "E05"


def test_stop_answers_pending_parts_with_fault(make_tracker) -> None:
    inbox, replies = Inbox(), []
    tracker = make_tracker(lambda pid, reply: replies.append(reply), timeout_s=30)
    tracker.release(tracker.submit("A", inbox))
    assert tracker.is_pending("A")
    tracker.stop()
    assert [v.defect for v in inbox.items] == ["FAULT"]
    replies[0](ok("A"))
    assert len(inbox.items) == 1
    with pytest.raises(TriggerRejected):
        tracker.submit("B", inbox)


def test_races_between_verdicts_and_deadlines_never_double_answer(make_tracker) -> None:
    """500 parts whose verdicts land randomly around a 20 ms deadline, from many threads."""
    rng = random.Random(4)
    inboxes = {f"P{i}": Inbox() for i in range(500)}
    timers: list[threading.Timer] = []

    def script(pid, reply):
        timer = threading.Timer(rng.uniform(0.0, 0.04), reply, args=(ok(pid),))
        timers.append(timer)
        timer.start()

    tracker = make_tracker(script, timeout_s=0.02)
    for pid, inbox in inboxes.items():
        tracker.release(tracker.submit(pid, inbox))
    for timer in timers:
        timer.join()
    for inbox in inboxes.values():
        assert inbox.wait(1)
    assert all(len(inbox.items) == 1 for inbox in inboxes.values())
    stats = tracker.stats
    assert stats.answered == 500
    # Both outcomes happen (replies land on both sides of the deadline), each part got exactly one of them,
    # and the counters match what the PLC actually received.
    timed_out = [i.items[0] for i in inboxes.values() if i.items[0].defect == "TIMEOUT"]
    answered_ok = [i.items[0] for i in inboxes.values() if i.items[0].verdict == "OK"]
    assert timed_out and answered_ok and len(timed_out) + len(answered_ok) == 500
    assert all(v.verdict == "NG" and v.fault for v in timed_out)
    assert stats.timeouts == len(timed_out) and stats.late_dropped == stats.timeouts
