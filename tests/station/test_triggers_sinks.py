"""Trigger queue and free-run clock; sink runners: policies, drops, errors, draining."""

from __future__ import annotations

import threading

import pytest

from inspector.plc.port import TriggerRejected
from inspector.station.sinks import CallbackSink, Sink, SinkRunner, _ranges
from inspector.station.triggers import FreeRunClock, FutureReply, Trigger, TriggerQueue, check_part_id
from tests.station.test_sources import FakeClock


def test_trigger_queue_refuses_with_e04_when_full() -> None:
    q = TriggerQueue(2)
    q.submit(Trigger("A", "plc"))
    q.submit(Trigger("B", "plc"))
    with pytest.raises(TriggerRejected) as exc:
        q.submit(Trigger("C", "plc"))
    assert exc.value.code == "E04"
    assert q.get(0).part_id == "A" and [t.part_id for t in q.drain()] == ["B"] and q.get(0) is None


def test_trigger_queue_tells_the_camera_on_accept_before_the_part_waits() -> None:
    """A software-triggered camera exposes when the part is accepted, not when the capture thread gets to it."""
    q = TriggerQueue(1)
    fired: list[float] = []
    q.on_accept = lambda t: fired.append(t) or True
    first = Trigger("A", "plc")
    q.submit(first)
    assert fired == [first.accepted] and first.armed
    refused = Trigger("B", "plc")
    with pytest.raises(TriggerRejected):
        q.submit(refused)  # a refused part must not make the camera expose (an extra frame)
    assert len(fired) == 1 and not refused.armed
    q.drain()
    q.on_accept = lambda t: False  # a camera without its own trigger
    q.submit(Trigger("C", "plc"))
    assert not q.get(0).armed


@pytest.mark.parametrize("bad", ["", "with space", "x" * 65, "tab\t", "ü"])
def test_part_ids_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        check_part_id(bad)
    assert check_part_id("LOT-7/part#12") == "LOT-7/part#12"


def test_free_run_clock_does_not_drift_and_counts_missed_ticks() -> None:
    clock = FakeClock()
    run = FreeRunClock(4.0, clock)  # every 0.25 s
    assert run.take() and not run.take()
    clock.t += 0.25
    assert run.wait_time() == pytest.approx(0.0) and run.take()
    clock.t += 1.0  # busy for four periods
    assert run.take() and run.late == 3
    assert run.wait_time() == pytest.approx(0.25)


def test_future_reply_completes_once() -> None:
    from inspector.plc.port import PartVerdict

    reply = FutureReply()
    reply(PartVerdict("A", "OK", 0.1, None))
    reply(PartVerdict.failed("A", "late"))  # a second call cannot change the answer
    assert reply.future.result(0).verdict == "OK"


class Gate(Sink):
    name = "gate"

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.items: list[int] = []
        self.closed = False

    def handle(self, item: int) -> None:
        self.entered.set()
        assert self.open.wait(30)
        if item < 0:
            raise RuntimeError(f"bad item {item}")
        self.items.append(item)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("policy", "kept", "dropped"), [("drop_oldest", [0, 3, 4], 2), ("drop_newest", [0, 1, 2], 2)])
def test_dropping_policies_never_block_the_producer(policy: str, kept: list[int], dropped: int) -> None:
    gate = Gate()
    lost: list[int] = []
    runner = SinkRunner(gate, queue_size=2, policy=policy, on_drop=lost.append).start()  # type: ignore[arg-type]
    assert runner.put(0)
    assert gate.entered.wait(30)  # item 0 is in hand, the queue is empty
    for i in range(1, 5):
        runner.put(i)  # returns at once although the sink is stuck
    assert runner.stats().dropped == dropped and len(lost) == dropped
    gate.open.set()
    assert runner.stop(30)
    assert gate.items == kept and gate.closed


def test_blocking_policy_and_errors_are_counted() -> None:
    gate = Gate()
    gate.open.set()
    failures: list[str] = []
    runner = SinkRunner(gate, queue_size=1, policy="block", on_error=lambda s, e: failures.append(str(e))).start()
    for i in (1, -2, 3):
        runner.put(i)
    assert runner.stop(30)
    stats = runner.stats()
    assert gate.items == [1, 3] and stats.errors == 1 and stats.handled == 2 and stats.dropped == 0
    assert failures == ["bad item -2"] and stats.last_error == "bad item -2"


def test_callback_sink_and_bad_policy() -> None:
    got: list[int] = []
    runner = SinkRunner(CallbackSink(got.append, "cb"), policy="block").start()
    runner.put(5)
    runner.stop(30)
    assert got == [5]
    with pytest.raises(ValueError, match="unknown sink policy"):
        SinkRunner(CallbackSink(got.append), policy="sometimes")  # type: ignore[arg-type]
    assert _ranges([9, 1, 2, 3, 7, 10]) == "1-3, 7, 9-10"


def test_one_failing_item_does_not_cost_the_rest_of_a_batch() -> None:
    gate = Gate()
    gate.open.set()
    runner = SinkRunner(gate, queue_size=8, policy="block", max_batch=8)
    for i in (1, -2, 3, 4):
        runner.put(i)  # queued before the thread starts: handled as one batch
    runner.start()
    assert runner.stop(30)
    assert gate.items == [1, 3, 4] and runner.stats().errors == 1 and runner.stats().handled == 3
