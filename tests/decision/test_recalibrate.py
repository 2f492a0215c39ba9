"""The production threshold: a truncated tail fit recovers the good-score distribution it never fully sees."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from inspector.decision.recalibrate import MIN_PARTS, fit_truncated, gev_logcdf, gev_logpdf, gev_ppf, propose_threshold


def _gev(shape: float, n: int, seed: int) -> np.ndarray:
    return stats.genextreme.rvs(-shape, loc=0.0, scale=1.0, size=n, random_state=np.random.default_rng(seed))


@pytest.mark.parametrize("shape", [0.0, 0.1, 0.25])
def test_closed_form_gev_matches_scipy(shape: float) -> None:
    x = np.linspace(-1.5, 6.0, 9)
    np.testing.assert_allclose(gev_logpdf(x, 0.3, 1.2, shape), stats.genextreme.logpdf(x, -shape, 0.3, 1.2))
    np.testing.assert_allclose(gev_logcdf(x, 0.3, 1.2, shape), stats.genextreme.logcdf(x, -shape, 0.3, 1.2))
    u = np.array([0.01, 0.5, 0.99])
    np.testing.assert_allclose(gev_ppf(u, 0.3, 1.2, shape), stats.genextreme.ppf(u, -shape, 0.3, 1.2))


def test_truncated_fit_recovers_the_whole_distribution() -> None:
    """Only the parts below the cutoff are seen; the plain mean / std of them would be far off."""
    x = _gev(0.1, 4000, seed=1)
    cutoff = float(np.quantile(x, 0.8))  # a fifth of the good parts (the whole tail) never seen
    fit = fit_truncated(x[x < cutoff], cutoff, shape=0.1)
    assert fit.loc == pytest.approx(0.0, abs=0.06) and fit.scale == pytest.approx(1.0, rel=0.06)
    naive = float(np.quantile(x[x < cutoff], 0.95))
    truth = float(stats.genextreme.ppf(0.95, -0.1))
    assert fit.quantile(0.95) == pytest.approx(truth, rel=0.05) and naive < 0.8 * truth


def test_proposal_hits_the_target_and_says_how_the_live_threshold_does() -> None:
    shape, target = 0.1, 0.05
    x = _gev(shape, 1200, seed=2)
    live = float(stats.genextreme.ppf(0.995, -shape))  # far too high: 0.5 % false rejects, escapes near it
    cutoff = live - 0.5
    defects = np.full(40, live + 3.0)  # NG parts: above the cutoff, never part of the fit
    est = propose_threshold(np.r_[x, defects], cutoff, target, live, shape=shape, replicates=100)
    true_fr = float(stats.genextreme.sf(est.calibration.threshold, -shape))
    lo, hi = est.calibration.false_reject_interval
    assert 0.035 < true_fr < 0.065 and lo <= true_fr <= hi and hi - lo < 0.03
    assert est.calibration.method == "production" and est.calibration.n_good == int(np.sum(x < cutoff))
    assert est.calibration.details["tail_shape_estimated"]  # 1,200 parts: the shape is estimated, not assumed
    assert 0.0025 < est.live_false_reject < 0.01
    assert est.live_interval[0] < 0.005 < est.live_interval[1] and est.live_interval[1] < target


def test_interval_covers_the_truth_across_samples() -> None:
    """The 90 % interval contains the proposed threshold's true false-reject rate in most repetitions."""
    shape, target, inside = 0.1, 0.05, 0
    runs = 10
    for seed in range(runs):
        x = _gev(shape, 250, seed=100 + seed)  # below FREE_SHAPE_PARTS: the assumed shape
        cutoff = float(stats.genextreme.ppf(0.99, -shape))
        est = propose_threshold(x, cutoff, target, cutoff + 0.5, shape=shape, replicates=60, seed=seed)
        lo, hi = est.calibration.false_reject_interval
        inside += lo <= float(stats.genextreme.sf(est.calibration.threshold, -shape)) <= hi
    assert inside >= runs - 3


def test_a_threshold_too_low_is_moved_beyond_the_parts_seen() -> None:
    """The live threshold rejects 10 %: the target's quantile lies above every part the fit sees (extrapolation),
    on a Gumbel and on a heavy tail alike, the shape estimated from the hundreds of parts; the interval is
    wide because the body of a distribution says little about its tail, and it says so."""
    for shape in (0.0, 0.25):
        for seed in (7, 8):
            x = _gev(shape, 800, seed=seed)
            live = float(stats.genextreme.ppf(0.9, -shape))
            est = propose_threshold(x, live - 0.2, 0.05, live, replicates=40)
            assert est.calibration.details["tail_shape_estimated"] and est.calibration.threshold > live
            true_fr = float(stats.genextreme.sf(est.calibration.threshold, -shape))
            lo, hi = est.calibration.false_reject_interval
            assert 0.015 < true_fr < 0.1 and lo < 0.05 < hi and hi - lo > 0.03, (shape, seed, true_fr, lo, hi)
            assert est.live_interval[0] < 0.1 < est.live_interval[1]


def test_too_few_parts_or_bad_target_are_refused() -> None:
    x = _gev(0.0, MIN_PARTS - 10, seed=3)
    with pytest.raises(ValueError, match=f"needs at least {MIN_PARTS}"):
        propose_threshold(x, 100.0, 0.05, 5.0)
    with pytest.raises(ValueError, match="target false-reject rate"):
        propose_threshold(_gev(0.0, 500, 4), 100.0, 0.6, 5.0)
    with pytest.raises(ValueError, match="at least 3 distinct"):
        fit_truncated(np.array([1.0, 1.0, 1.0, 9.0]), 5.0)
