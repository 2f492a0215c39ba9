"""The shift's NG-rate trend per 15 minutes with defect classes (issue #17 item 13)."""

from __future__ import annotations

from gui.widgets.yield_trend import BIN_S, YieldTrend
from inspector.station.handle import ShiftCounts
from tests.gui.conftest import wait_parts, wait_running


def test_bins_take_the_deltas_of_the_polled_counts(qtbot):
    now = [10 * BIN_S + 5.0]
    trend = YieldTrend(clock=lambda: now[0])
    qtbot.addWidget(trend)
    trend.add_counts(ShiftCounts(parts=100, ok=90, ng=10))  # what came before the window: not in the trend
    trend.add_counts(ShiftCounts(parts=120, ok=105, ng=14, faults=1))
    trend.add_ng("scratch")
    trend.add_ng("scratch")
    trend.add_ng(None)
    now[0] += BIN_S
    trend.add_counts(ShiftCounts(parts=130, ok=115, ng=14, faults=1))
    first, second = trend.bins
    assert (first.parts, first.ng, first.classes) == (19, 4, {"scratch": 2, "anomaly": 1})
    assert first.ng_rate == 4 / 19 and second.ng_rate == 0.0 and second.start - first.start == BIN_S
    assert "NG 21.1 % of 19  (scratch 2, anomaly 1)" in trend.toolTip()
    trend.add_counts(ShiftCounts(parts=3, ok=3))  # a new count (restart): no negative delta
    assert trend.bins[-1].parts == 10
    trend.grab()  # paints


def test_a_new_shift_starts_an_empty_trend_and_the_counters_name_the_shift(qtbot):
    from gui.widgets.counters import Counters

    now = [10 * BIN_S + 5.0]
    trend = YieldTrend(clock=lambda: now[0])
    counters = Counters()
    qtbot.addWidget(trend)
    qtbot.addWidget(counters)
    late = ShiftCounts(parts=10, ok=8, ng=2, shift="late · since 14:00", since_ns=1)
    trend.add_counts(late)
    trend.add_counts(ShiftCounts(parts=20, ok=17, ng=3, shift=late.shift, since_ns=1))
    assert trend.bins and trend.bins[-1].parts == 10
    night = ShiftCounts(parts=0, shift="night · since 22:00", since_ns=2)
    trend.add_counts(night)  # the shift changed: its trend starts empty
    assert trend.bins == []
    trend.add_counts(ShiftCounts(parts=4, ok=4, shift=night.shift, since_ns=2))
    assert trend.bins[-1].parts == 4
    counters.update_counts(night, 0.0)
    assert counters.shift.text() == "SHIFT  ·  night · since 22:00" and counters.total.value.text() == "0"
    assert counters.yield_.value.text() == "-"


def test_operator_view_shows_the_trend(window, qtbot):
    wait_running(qtbot, window)
    wait_parts(qtbot, window, 4)
    trend = window.operator.trend
    qtbot.waitUntil(lambda: bool(trend.bins) and trend.bins[-1].parts > 0, timeout=10_000)
    assert trend.isVisible() and sum(b.parts for b in trend.bins) <= window.handle.counts().parts
