"""Heatmap legend and honest colours (issue #17 item 10)."""

from __future__ import annotations

import numpy as np

from gui.workers import heat_rgba
from tests.gui.conftest import wait_parts, wait_running


def test_ok_maps_are_not_washed_and_colours_are_fixed() -> None:
    level = 0.8
    quiet = np.full((8, 8), 0.1, np.float32)  # an OK part: well below the region threshold
    assert heat_rgba(quiet, level)[..., 3].max() == 0  # no colour over a good part
    hot = quiet.copy()
    hot[2:4, 2:4] = 1.2
    rgba = heat_rgba(hot, level)
    assert rgba[2, 2, 3] == 210 and rgba[0, 0, 3] == 0
    # The same value has the same colour on every part (not stretched to each map's own range).
    other = np.full((8, 8), 1.2, np.float32)
    other[0, 0] = -5.0
    assert (heat_rgba(other, level)[5, 5, :3] == rgba[2, 2, :3]).all()


def test_live_view_shows_a_legend_at_the_region_threshold(window, qtbot):
    wait_running(qtbot, window)
    wait_parts(qtbot, window, 2)
    legend = window.operator.legend
    level = window.handle.inspector.region_threshold
    qtbot.waitUntil(lambda: legend.level == level, timeout=10_000)
    ticks = legend.ticks()
    assert ticks[1] == (0.5, f"region {level:.2f}") and legend.isVisible()
    assert float(ticks[0][1]) < level < float(ticks[2][1])
