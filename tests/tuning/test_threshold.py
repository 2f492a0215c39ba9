"""Threshold estimates on the stored samples' scores, and the slider's range."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.tuning.threshold import slider_range, threshold_estimate


def test_threshold_estimate_counts_held_out_scores():
    est = threshold_estimate(np.array([0.1, 0.2, 0.6]), np.array([0.5, 0.9]), 0.55)
    assert est.false_reject == pytest.approx(1 / 3) and est.escape == pytest.approx(0.5)
    assert threshold_estimate(np.array([0.1]), np.empty(0), 0.5).escape is None


def test_threshold_estimate_at_the_slider_ends_rejects_all_or_none():
    good, defect = np.array([0.1, 0.2, 0.6]), np.array([0.5, 0.9])
    lo, hi = slider_range(good, defect, 0.55)
    low, high = threshold_estimate(good, defect, lo), threshold_estimate(good, defect, hi)
    assert low.false_reject == 1.0 and high.false_reject == 0.0  # every good sample NG / OK at the ends
    assert high.escape == 1.0 and low.escape == 0.0
    assert (low.n_good, low.n_defect) == (3, 2)


def test_slider_range_shows_the_threshold_and_ignores_non_finite_scores():
    lo, hi = slider_range(np.array([0.1, np.nan]), np.array([np.inf]), 2.0)
    assert lo < 0.1 and hi > 2.0 and np.isfinite([lo, hi]).all()
    lo, hi = slider_range(np.empty(0), np.empty(0), 1.0)  # no samples: still a usable range
    assert lo < 1.0 < hi
