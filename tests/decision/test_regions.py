"""Defect regions from an anomaly map: threshold, min area, ROI offset, order, cap, peak, connectivity."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.decision.regions import find_regions


def _map() -> np.ndarray:
    """A 20x30 map: a 2x2 blob top-left (raster-first), a 3x4 blob, and an L whose box holds another pixel."""
    m = np.zeros((20, 30), np.float32)
    m[1:3, 1:3] = 0.6  # 4 px, first in raster order
    m[10:13, 20:24] = 0.7  # 12 px
    m[5, 5:10] = 0.5  # L: a row ...
    m[5:9, 5] = 0.5  # ... and a column: 8 px, box x 5..9, y 5..8
    m[8, 9] = 0.95  # a separate single pixel inside the L's box (not 8-connected to it)
    return m


def test_regions_largest_first_with_boxes_and_areas() -> None:
    regions = find_regions(_map(), 0.5)
    assert [(r.x, r.y, r.width, r.height, r.area_px) for r in regions] == [
        (20, 10, 4, 3, 12), (5, 5, 5, 4, 8), (1, 1, 2, 2, 4), (9, 8, 1, 1, 1)]


def test_peak_is_the_components_own_maximum() -> None:
    """The L's box contains the 0.95 pixel of another component: the L's peak is still 0.5."""
    peaks = {r.area_px: r.peak for r in find_regions(_map(), 0.5)}
    assert peaks == {12: pytest.approx(0.7), 8: pytest.approx(0.5), 4: pytest.approx(0.6), 1: pytest.approx(0.95)}


def test_threshold_is_inclusive_and_selects_pixels() -> None:
    m = _map()
    assert {r.area_px for r in find_regions(m, 0.5)} == {12, 8, 4, 1}  # 0.5 itself counts
    assert {r.area_px for r in find_regions(m, 0.55)} == {12, 4, 1}
    assert {r.area_px for r in find_regions(m, 0.9)} == {1}
    assert find_regions(m, 0.96) == []


def test_min_area_keeps_regions_of_exactly_that_size() -> None:
    m = _map()
    assert [r.area_px for r in find_regions(m, 0.5, min_area=8)] == [12, 8]
    assert [r.area_px for r in find_regions(m, 0.5, min_area=9)] == [12]
    assert [r.area_px for r in find_regions(m, 0.5, min_area=1)] == [12, 8, 4, 1]


def test_roi_offset_moves_boxes_to_frame_pixels() -> None:
    """The map covers the ROI; regions are reported in frame pixels (x + roi x, y + roi y)."""
    base = find_regions(_map(), 0.5)
    moved = find_regions(_map(), 0.5, offset=(100, 7))
    assert [(r.x, r.y) for r in moved] == [(r.x + 100, r.y + 7) for r in base]
    assert [(r.width, r.height, r.area_px, r.peak) for r in moved] == [
        (r.width, r.height, r.area_px, r.peak) for r in base]


def test_max_regions_keeps_the_largest() -> None:
    assert [r.area_px for r in find_regions(_map(), 0.5, max_regions=2)] == [12, 8]


def test_diagonal_pixels_are_one_region() -> None:
    m = np.zeros((6, 6), np.float32)
    m[1, 1] = m[2, 2] = m[3, 3] = 1.0
    (region,) = find_regions(m, 0.5)
    assert (region.x, region.y, region.width, region.height, region.area_px) == (1, 1, 3, 3, 3)
