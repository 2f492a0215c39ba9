"""Pairing frames with triggers by order and time (pure): a missing or extra frame never shifts a verdict."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inspector.station.framematch import ClockMap, FrameMatcher, GrabbedFrame, Pick, frame_gap


def frame(t: float, frame_id: int) -> GrabbedFrame:
    return GrabbedFrame(f"image {frame_id}", frame_id, None, t, t)


def triggered() -> FrameMatcher:
    return FrameMatcher(triggered=True, early_s=0.05, late_s=0.2)


def test_triggered_frames_pair_in_order() -> None:
    m = triggered()
    m.add(frame(10.03, 1))
    m.add(frame(10.53, 2))
    first = m.pick(10.0)
    assert first.outcome is Pick.MATCH and first.frame.frame_id == 1 and not first.extras
    assert m.pick(10.5).frame.frame_id == 2
    assert m.pick(11.0).outcome is Pick.WAIT


def test_a_missing_frame_faults_its_part_and_the_next_part_keeps_its_own_frame() -> None:
    m = triggered()
    m.add(frame(10.53, 2))  # the camera missed the pulse of the part triggered at 10.0
    missing = m.pick(10.0)
    assert missing.outcome is Pick.MISSING and missing.frame is None
    nxt = m.pick(10.5)
    assert nxt.outcome is Pick.MATCH and nxt.frame.frame_id == 2  # not shifted onto the earlier part


def test_an_extra_frame_is_dropped_and_reported_never_given_to_a_part() -> None:
    m = triggered()
    m.add(frame(9.70, 1))  # a pulse without a PLC message (or line noise)
    m.add(frame(10.02, 2))
    picked = m.pick(10.0)
    assert picked.outcome is Pick.MATCH and picked.frame.frame_id == 2
    assert [f.frame_id for f in picked.extras] == [1]


def test_the_frame_may_precede_its_trigger_message_by_early() -> None:
    m = triggered()
    m.add(frame(9.97, 1))  # the PLC's message trailed its pulse by 30 ms
    assert m.pick(10.0).frame.frame_id == 1


def test_free_run_takes_the_first_frame_at_or_after_the_trigger() -> None:
    m = FrameMatcher(triggered=False, early_s=0.05, late_s=0.2)
    for i, t in enumerate((9.90, 9.95, 10.00, 10.05)):
        m.add(frame(t, i + 1))
    picked = m.pick(9.96)
    assert picked.outcome is Pick.MATCH and picked.frame.frame_id == 3 and not picked.extras
    assert m.pick(10.2).outcome is Pick.WAIT  # older frames were superseded, not extras


def test_free_run_never_hands_a_part_a_frame_from_long_after_its_trigger() -> None:
    m = FrameMatcher(triggered=False, early_s=0.05, late_s=0.2)
    m.add(frame(11.5, 30))  # the frames right after 10.0 were overwritten while the station was busy
    assert m.pick(10.0).outcome is Pick.MISSING
    assert m.pick(11.45).frame.frame_id == 30  # kept for the trigger it belongs to


def test_capacity_pushes_out_the_oldest_frame() -> None:
    m = FrameMatcher(triggered=True, early_s=0.05, late_s=0.2, capacity=2)
    assert m.add(frame(1.0, 1)) is None and m.add(frame(2.0, 2)) is None
    assert m.add(frame(3.0, 3)).frame_id == 1 and m.overflow == 1 and len(m) == 2


@given(st.lists(st.booleans(), min_size=1, max_size=40), st.lists(st.booleans(), min_size=1, max_size=40))
def test_no_part_is_ever_judged_on_another_parts_frame(delivered: list[bool], extra: list[bool]) -> None:
    """Parts every 0.5 s; each part's frame arrives or not; extra frames come between parts. Whatever the mix,
    a part gets its own frame or none."""
    m = triggered()
    for i, ok in enumerate(delivered):
        t = 10.0 + 0.5 * i
        if extra[i % len(extra)]:
            m.add(GrabbedFrame("extra", None, None, t - 0.25, t - 0.25))
        if ok:
            m.add(GrabbedFrame(i, i, None, t + 0.03, t + 0.03))
        picked = m.pick(t)
        if ok:
            assert picked.outcome is Pick.MATCH and picked.frame.data == i
        else:
            assert picked.frame is None
        assert all(f.data == "extra" for f in picked.extras)


def test_frame_gap_counts_lost_ids_across_a_16_bit_wrap() -> None:
    assert frame_gap(None, 5) == 0 and frame_gap(5, None) == 0
    assert frame_gap(5, 6) == 0 and frame_gap(5, 9) == 3
    assert frame_gap(65535, 1) == 0  # GigE Vision 1 ids skip 0 when they wrap
    assert frame_gap(65534, 2) == 2
    assert frame_gap(1000, 1) == 0  # the camera restarted its ids (reset, power cycle): not a loss


def test_clock_map_uses_the_midpoint_and_prefers_tight_samples() -> None:
    c = ClockMap(max_age_s=30.0)
    assert c.to_host(1_000_000_000) is None and c.due(0.0, 5.0)
    c.sync(100.0, 5_000_000_000, 100.002)  # camera said 5.000 s while the host went 100.000 -> 100.002
    assert c.to_host(6_000_000_000) == pytest.approx(101.001)
    c.sync(101.0, 6_000_000_000, 101.010)  # a slow round trip: less certain, ignored
    assert c.to_host(6_000_000_000) == pytest.approx(101.001)
    c.sync(140.0, 45_000_000_000, 140.020)  # the kept sample is too old: drift wins over tightness
    assert c.to_host(45_000_000_000) == pytest.approx(140.010)
    assert not c.due(141.0, 5.0) and c.due(146.0, 5.0)
