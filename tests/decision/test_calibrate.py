from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from inspector.decision.calibrate import (
    fit_temperature,
    threshold_best_f1,
    threshold_for_false_reject,
    threshold_min_cost,
)


@pytest.mark.parametrize(("n", "target"), [(400, 0.05), (40, 0.01), (20, 0.05), (8, 0.05)])
def test_false_reject_target_holds_on_held_out_good(n: int, target: float) -> None:
    """Over many repetitions the held-out false-reject rate averages to the target (within sampling error)."""
    rng = np.random.default_rng(1)
    rates = []
    for _ in range(300):
        # Peak-of-map scores are maxima: a Gumbel population.
        calib = threshold_for_false_reject(rng.gumbel(1.0, 0.2, n), target)
        rates.append(np.mean(rng.gumbel(1.0, 0.2, 4000) >= calib.threshold))
    mean_rate = float(np.mean(rates))
    # 3 standard errors of the mean of per-repetition rates, plus the estimator's small-n bias allowance.
    tolerance = 3 * np.std(rates) / np.sqrt(len(rates)) + 0.35 * target
    assert abs(mean_rate - target) < tolerance, (mean_rate, target)


def test_false_reject_uses_empirical_quantile_when_data_allows() -> None:
    scores = np.arange(1000, dtype=float)
    calib = threshold_for_false_reject(scores, 0.1)
    assert calib.details["estimator"] == "empirical quantile"
    assert calib.threshold == pytest.approx(np.quantile(scores, 0.9))
    assert calib.details["observed_false_reject_on_calibration_set"] == pytest.approx(0.1, abs=0.002)


def test_false_reject_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        threshold_for_false_reject(np.array([1.0]), 0.01)
    with pytest.raises(ValueError, match="target"):
        threshold_for_false_reject(np.array([1.0, 2.0]), 0.7)


def test_best_f1_hand_case() -> None:
    good = np.array([0.1, 0.2, 0.3, 0.45])
    defect = np.array([0.4, 0.6, 0.7])
    calib = threshold_best_f1(good, defect)
    # Threshold between 0.3 and 0.4 catches all defects with one false reject: F1 = 6/7.
    assert 0.3 < calib.threshold <= 0.4
    assert calib.details["f1"] == pytest.approx(6 / 7)
    labels = np.r_[np.zeros(4), np.ones(3)]
    preds = np.r_[good, defect] >= calib.threshold
    assert f1_score(labels, preds) == pytest.approx(calib.details["f1"])
    assert calib.expected_escape == 0.0
    assert calib.expected_false_reject == pytest.approx(0.25)


def test_cost_weights_move_the_threshold() -> None:
    rng = np.random.default_rng(0)
    good, defect = rng.normal(0, 1, 200), rng.normal(2, 1, 50)
    cautious = threshold_min_cost(good, defect, cost_false_reject=1, cost_escape=100)
    lenient = threshold_min_cost(good, defect, cost_false_reject=100, cost_escape=1)
    assert cautious.threshold < lenient.threshold
    assert cautious.expected_escape <= lenient.expected_escape
    with pytest.raises(ValueError, match="good and defect"):
        threshold_min_cost(good, np.array([]), 1, 1)


def test_temperature_recovers_the_generating_scale() -> None:
    rng = np.random.default_rng(0)
    margins = rng.normal(0, 0.05, 4000)
    labels = rng.random(4000) < 1 / (1 + np.exp(-40.0 * margins))
    assert fit_temperature(margins, labels.astype(float), init=100.0) == pytest.approx(40.0, rel=0.15)
    with pytest.raises(ValueError):
        fit_temperature(margins, np.zeros_like(margins))


# ------------------------------------------------------------------ false-reject intervals (issue #12)
from scipy import stats as _stats  # noqa: E402

from inspector.decision.calibrate import (  # noqa: E402
    Calibration,
    clopper_pearson,
    order_statistic_interval,
    tail_bootstrap_interval,
)


def test_order_statistic_interval_covers_the_true_rate_for_any_distribution() -> None:
    """The Beta interval of the empirical quantile is distribution-free: check it on two unlike populations."""
    rng = np.random.default_rng(7)
    n, target = 120, 0.05
    lo, hi = order_statistic_interval(n, 1 - target)
    for draw, cdf in ((lambda k: rng.exponential(1.0, k), lambda t: _stats.expon.cdf(t)),
                      (lambda k: rng.normal(0.0, 1.0, k), lambda t: _stats.norm.cdf(t))):
        true_fr = np.array([1 - cdf(threshold_for_false_reject(draw(n), target).threshold) for _ in range(400)])
        coverage = np.mean((true_fr >= lo) & (true_fr <= hi))
        assert coverage >= 0.88, coverage  # nominal 90 %, conservative by construction
        assert lo < target < hi


def test_empirical_calibration_reports_the_order_statistic_interval() -> None:
    calib = threshold_for_false_reject(np.random.default_rng(0).normal(size=400), 0.05)
    assert calib.interval_method == "order statistic (Beta)" and calib.interval_level == 0.9
    assert calib.false_reject_interval == pytest.approx(order_statistic_interval(400, 0.95))
    lo, hi = calib.false_reject_interval
    assert 0.025 < lo < 0.05 < hi < 0.08
    wide = threshold_for_false_reject(np.random.default_rng(0).normal(size=100), 0.05).false_reject_interval
    assert wide[1] - wide[0] > hi - lo  # fewer parts, less sure


POPULATIONS = {  # (sampler, survival function): a light, a Gumbel and a heavy tail
    "normal": (lambda rng, n: rng.normal(1.0, 0.2, n), lambda t: _stats.norm.sf(t, 1.0, 0.2)),
    "gumbel": (lambda rng, n: rng.gumbel(1.0, 0.2, n), lambda t: _stats.gumbel_r.sf(t, 1.0, 0.2)),
    "lognormal": (lambda rng, n: rng.lognormal(0.0, 0.8, n), lambda t: _stats.lognorm.sf(t, 0.8)),
}


@pytest.mark.parametrize("population", list(POPULATIONS))
@pytest.mark.parametrize(("n", "target"), [(8, 0.05), (16, 0.01)])
def test_tail_fit_interval_covers_the_true_rate_whatever_the_tail(n: int, target: float, population: str) -> None:
    draw, survival = POPULATIONS[population]
    rng = np.random.default_rng(11)
    hits = []
    for _ in range(150):
        calib = threshold_for_false_reject(draw(rng, n), target)
        assert calib.details["estimator"] == "GEV tail fit"
        lo, hi = calib.false_reject_interval
        hits.append(lo <= float(survival(calib.threshold)) <= hi)
        free, model = calib.details["distribution_free_interval"], calib.details["model_interval"]
        assert lo == min(free[0], model[0]) and hi == max(free[1], model[1])
    assert np.mean(hits) >= 0.88, np.mean(hits)  # >= 90 % by construction (distribution-free part), minus noise


def test_distribution_free_interval_edges() -> None:
    from inspector.decision.calibrate import distribution_free_interval

    scores = np.arange(1.0, 9.0)  # 8 scores
    assert distribution_free_interval(scores, 100.0) == (0.0, pytest.approx(1 - 0.05 ** (1 / 8)))
    assert distribution_free_interval(scores, 0.0) == (pytest.approx(0.05 ** (1 / 8)), 1.0)
    lo, hi = distribution_free_interval(scores, 4.5)  # between the 4th and 5th scores
    assert 0.0 < lo < 0.5 < hi < 1.0


def test_gumbel_bootstrap_is_reproducible_and_handles_constant_scores() -> None:
    scores = np.random.default_rng(3).gumbel(size=8)
    assert tail_bootstrap_interval(scores, 0.95) == tail_bootstrap_interval(scores, 0.95)
    assert tail_bootstrap_interval(np.ones(8), 0.95) == (0.0, 1.0)


def test_clopper_pearson_edges_and_coverage() -> None:
    assert clopper_pearson(0, 20)[0] == 0.0 and clopper_pearson(20, 20)[1] == 1.0
    rng = np.random.default_rng(5)
    ks = rng.binomial(50, 0.1, 2000)
    cover = np.mean([lo <= 0.1 <= hi for lo, hi in (clopper_pearson(int(k), 50) for k in ks)])
    assert cover >= 0.9


def test_labelled_methods_carry_an_interval_of_their_own_false_reject_count() -> None:
    good = np.array([0.1, 0.2, 0.3, 0.45])
    calib = threshold_best_f1(good, np.array([0.4, 0.6, 0.7]))
    assert calib.false_reject_interval == pytest.approx(clopper_pearson(1, 4))
    assert "optimistic" in calib.interval_method


def test_calibration_record_round_trip_and_description() -> None:
    calib = threshold_for_false_reject(np.random.default_rng(2).gumbel(size=8), 0.05)
    record = calib.to_record()
    assert isinstance(record["false_reject_interval"], list)  # YAML-plain
    assert Calibration.from_record({**record, "computed_at": "x"}) == calib
    text = calib.describe()
    assert text.startswith("target 5.0 %: ") and "with 8 good parts (90 % interval)" in text


@pytest.mark.parametrize(("n", "target"), [(2, 0.01), (3, 0.01), (4, 0.01), (2, 0.05), (3, 0.05)])
def test_bias_correction_is_bounded_with_very_few_good_scores(n: int, target: float) -> None:
    """With 2-4 good scores the uncapped correction aimed within ~1e-6 of 1 (a threshold ~10 std above every good
    score, past every defect). Capped, the tail it aims at is at least target / MAX_TAIL_CORRECTION, and it says so."""
    from inspector.decision.calibrate import MAX_TAIL_CORRECTION, TAIL_SHAPE, tail_level

    scores = np.random.default_rng(4).gumbel(1.0, 0.2, n)
    level = tail_level(scores, 1 - target)
    assert level == pytest.approx(1 - target / MAX_TAIL_CORRECTION)
    calib = threshold_for_false_reject(scores, target)
    assert calib.details["bias_correction_capped"] is True
    fitted = _stats.genextreme(-TAIL_SHAPE)  # moment fit of GEV(TAIL_SHAPE), then its capped quantile
    scale = scores.std(ddof=1) / fitted.std()
    loc = scores.mean() - scale * fitted.mean()
    assert calib.threshold == pytest.approx(loc + scale * fitted.ppf(1 - target / MAX_TAIL_CORRECTION))
    assert calib.false_reject_interval[1] > target / MAX_TAIL_CORRECTION  # the interval is that of the capped level


@pytest.mark.parametrize(("n", "target"), [(8, 0.05), (8, 0.01), (16, 0.01)])
def test_bias_correction_is_not_capped_with_enough_good_scores(n: int, target: float) -> None:
    calib = threshold_for_false_reject(np.random.default_rng(4).gumbel(1.0, 0.2, n), target)
    assert calib.details["estimator"] == "GEV tail fit" and calib.details["bias_correction_capped"] is False
    assert 1 - target < calib.details["quantile_level"] < 1 - target / 10  # corrected, within the cap
